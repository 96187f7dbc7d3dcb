package cronschedule

import (
	"strings"
	"testing"
	"time"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

func mustSchedule(t *testing.T, spec, zone string) *Schedule {
	t.Helper()
	var tz *string
	if zone != "" {
		tz = &zone
	}
	s, err := Parse(spec, tz)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseRefuses(t *testing.T) {
	bad := "Mars/Olympus"
	for _, tc := range []struct {
		spec string
		zone *string
		want string
	}{
		{spec: "CRON_TZ=Europe/Berlin 0 * * * *", want: "spec.timeZone"},
		{spec: "61 * * * *", want: "schedule"},
		{spec: "* * * *", want: "schedule"},
		{spec: "@often", want: "schedule"},
		{spec: "@hourly", zone: &bad, want: "time zone"},
	} {
		if _, err := Parse(tc.spec, tc.zone); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one naming %q", tc.spec, err, tc.want)
		}
	}
}

// The schedule is read in spec.timeZone: wall-clock times stay put across DST changes. Around them it behaves as
// robfig/cron (and so Kubernetes CronJob) does: a time that does not exist that day (02:30 when clocks spring
// forward) is skipped, and one that exists twice (01:30 when they fall back) fires at both instants.
func TestAcrossDST(t *testing.T) {
	const ny = "America/New_York"
	for _, tc := range []struct {
		name, spec, from string
		want             []string
	}{
		{name: "09:00 daily keeps local time over spring forward", spec: "0 9 * * *", from: "2027-03-13T00:00:00Z",
			want: []string{"2027-03-13T14:00:00Z", "2027-03-14T13:00:00Z", "2027-03-15T13:00:00Z"}},
		{name: "09:00 daily keeps local time over fall back", spec: "0 9 * * *", from: "2027-11-06T00:00:00Z",
			want: []string{"2027-11-06T13:00:00Z", "2027-11-07T14:00:00Z"}},
		{name: "02:30 does not exist on 14 March", spec: "30 2 * * *", from: "2027-03-13T12:00:00Z",
			want: []string{"2027-03-15T06:30:00Z", "2027-03-16T06:30:00Z"}},
		{name: "01:30 exists twice on 7 November", spec: "30 1 * * *", from: "2027-11-06T12:00:00Z",
			want: []string{"2027-11-07T05:30:00Z", "2027-11-07T06:30:00Z", "2027-11-08T06:30:00Z"}},
		{name: "@hourly follows real hours", spec: "@hourly", from: "2027-03-14T06:30:00Z",
			want: []string{"2027-03-14T07:00:00Z", "2027-03-14T08:00:00Z"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSchedule(t, tc.spec, ny)
			at := mustTime(t, tc.from)
			for _, w := range tc.want {
				at = s.Next(at)
				if !at.Equal(mustTime(t, w)) {
					t.Fatalf("next = %s, want %s", at.Format(time.RFC3339), w)
				}
			}
		})
	}
	if got := mustSchedule(t, "0 9 * * *", "").Next(mustTime(t, "2027-03-14T00:00:00Z")); !got.Equal(mustTime(t, "2027-03-14T09:00:00Z")) {
		t.Errorf("without a time zone, 09:00 is %s, want 09:00 UTC", got)
	}
}

func TestMostRecent(t *testing.T) {
	hourly := mustSchedule(t, "0 * * * *", "")
	for _, tc := range []struct {
		name, earliest, now string
		sched               *Schedule
		want                string // "" for none
		missed              bool
	}{
		{name: "nothing due yet", sched: hourly, earliest: "2027-01-01T10:00:00Z", now: "2027-01-01T10:59:59Z"},
		{name: "due exactly now", sched: hourly, earliest: "2027-01-01T10:00:00Z", now: "2027-01-01T11:00:00Z", want: "2027-01-01T11:00:00Z"},
		{name: "one due", sched: hourly, earliest: "2027-01-01T10:00:00Z", now: "2027-01-01T11:30:00Z", want: "2027-01-01T11:00:00Z"},
		{name: "earliest itself is not due again", sched: hourly, earliest: "2027-01-01T11:00:00Z", now: "2027-01-01T11:30:00Z"},
		{name: "five missed: the last runs", sched: hourly, earliest: "2027-01-01T10:00:00Z", now: "2027-01-01T15:10:00Z",
			want: "2027-01-01T15:00:00Z", missed: true},
		{name: "a year of minutes missed", sched: mustSchedule(t, "* * * * *", ""), earliest: "2026-01-01T00:00:00Z",
			now: "2027-01-01T00:00:30Z", want: "2027-01-01T00:00:00Z", missed: true},
		{name: "yearly, found far back", sched: mustSchedule(t, "@yearly", ""), earliest: "2025-06-01T00:00:00Z",
			now: "2026-12-31T00:00:00Z", want: "2026-01-01T00:00:00Z"},
		{name: "a schedule that never fires", sched: mustSchedule(t, "0 0 30 2 *", ""), earliest: "2026-01-01T00:00:00Z",
			now: "2027-01-01T00:00:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, missed, ok := tc.sched.MostRecent(mustTime(t, tc.earliest), mustTime(t, tc.now))
			if ok != (tc.want != "") {
				t.Fatalf("ok = %v (at %s), want a time: %v", ok, got, tc.want != "")
			}
			if ok && (!got.Equal(mustTime(t, tc.want)) || missed != tc.missed) {
				t.Errorf("mostRecent = %s, missed others %v; want %s, %v", got.Format(time.RFC3339), missed, tc.want, tc.missed)
			}
		})
	}
}
