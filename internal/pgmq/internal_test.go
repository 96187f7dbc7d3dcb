package pgmq

import (
	"strings"
	"testing"
	"time"
)

// compat.sql marks the schema with the revision Install's marker carries.
func TestCompatCommentInStep(t *testing.T) {
	want := "COMMENT ON SCHEMA pgmq IS '" + compatCommentPrefix + " " + compatVersion + "';"
	if !strings.Contains(compatSQL, want) {
		t.Fatalf("compat.sql does not contain %s", want)
	}
	if !strings.HasPrefix(compatComment, compatCommentPrefix+" "+compatVersion+" sha256:") {
		t.Fatalf("compatComment = %q", compatComment)
	}
	for _, bad := range []string{"BEGIN;", "COMMIT;", "ROLLBACK;"} {
		if strings.Contains(strings.ToUpper(compatSQL), bad) {
			t.Fatalf("compat.sql contains transaction control %q", bad)
		}
	}
}

func TestSecondsRoundsUp(t *testing.T) {
	for _, tc := range []struct {
		in   time.Duration
		want int32
	}{
		{-time.Hour, 0}, {0, 0}, {1, 1}, {time.Second, 1}, {time.Second + 1, 2}, {59500 * time.Millisecond, 60},
	} {
		if got, err := seconds("d", tc.in); err != nil || got != tc.want {
			t.Errorf("seconds(%v) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	if _, err := seconds("d", time.Duration(1<<62)); err == nil {
		t.Error("seconds accepted a duration beyond int32 seconds")
	}
}
