package packaging

import (
	"regexp"
	"strings"
	"testing"
)

// TestDockerfilesBuildLikeMakefile: each image builds its binary with the very `go build` command of its Makefile
// target (so what CI builds and tests is what ships), runs it as a non-root user on a distroless base.
func TestDockerfilesBuildLikeMakefile(t *testing.T) {
	makefile := string(readRepoFile(t, "Makefile"))
	for _, tc := range []struct{ dockerfile, target, binary string }{
		{"Dockerfile", "build", "manager"},
		{"Dockerfile.worker", "build-worker", "worker"},
	} {
		t.Run(tc.dockerfile, func(t *testing.T) {
			recipe := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(tc.target) + `:.*\n\t(.*go build .*)$`).FindStringSubmatch(makefile)
			if recipe == nil {
				t.Fatalf("Makefile target %s has no go build line", tc.target)
			}
			want := strings.TrimSpace(recipe[1])
			docker := string(readRepoFile(t, tc.dockerfile))
			run := regexp.MustCompile(`(?m)^RUN .*?(CGO_ENABLED=.*go build .*)$`).FindStringSubmatch(docker)
			if run == nil {
				t.Fatalf("%s has no go build line", tc.dockerfile)
			}
			if got := strings.TrimSpace(run[1]); got != want {
				t.Errorf("%s builds with\n  %s\nthe Makefile with\n  %s", tc.dockerfile, got, want)
			}
			if !strings.Contains(docker, "FROM gcr.io/distroless/static:nonroot") || !strings.Contains(docker, "USER 65532:65532") {
				t.Errorf("%s must run on distroless/static:nonroot as USER 65532:65532", tc.dockerfile)
			}
			if !strings.Contains(docker, `ENTRYPOINT ["/`+tc.binary+`"]`) {
				t.Errorf("%s must run /%s", tc.dockerfile, tc.binary)
			}
		})
	}
}
