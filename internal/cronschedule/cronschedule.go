// Package cronschedule reads a CronTask's schedule: standard cron or a macro, in an IANA time zone. The
// controller and the webhook share it, so what admission accepts is what runs.
package cronschedule

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule is a CronTask's parsed schedule, read in its time zone.
type Schedule struct {
	sched cron.Schedule
	loc   *time.Location
}

// Parse parses a standard 5-field schedule or macro (@hourly, @every 5m...) and an IANA time zone
// ("" is UTC). A TZ= or CRON_TZ= prefix is refused: the zone belongs in spec.timeZone.
func Parse(schedule string, timeZone *string) (*Schedule, error) {
	if strings.Contains(schedule, "TZ=") {
		return nil, fmt.Errorf("schedule %q sets a time zone: use spec.timeZone", schedule)
	}
	sched, err := cron.ParseStandard(schedule)
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %w", schedule, err)
	}
	loc := time.UTC
	if timeZone != nil {
		if loc, err = time.LoadLocation(*timeZone); err != nil {
			return nil, fmt.Errorf("time zone %q: %w", *timeZone, err)
		}
	}
	return &Schedule{sched: sched, loc: loc}, nil
}

// Next is the first scheduled time after t (zero when the schedule never fires, e.g. 30 February). robfig/cron
// reads the fields in the location of the time it is given: t is moved into the CronTask's zone first.
func (s *Schedule) Next(t time.Time) time.Time {
	n := s.sched.Next(t.In(s.loc))
	if n.IsZero() {
		return n
	}
	return n.UTC()
}

// MostRecent returns the latest scheduled time in (earliest, now], and whether other scheduled times in that
// interval were missed before it. ok is false when there is none.
//
// It does not walk from earliest (a minutely schedule left for a year would take half a million steps): it looks
// back from now over a window that doubles until it holds a scheduled time, then walks that window only.
func (s *Schedule) MostRecent(earliest, now time.Time) (latest time.Time, missedOthers, ok bool) {
	first := s.Next(earliest)
	if first.IsZero() || first.After(now) {
		return time.Time{}, false, false
	}
	for window := time.Minute; ; window *= 2 {
		from := now.Add(-window)
		if !from.After(earliest) {
			from = earliest
		}
		t := s.Next(from)
		if t.IsZero() || t.After(now) {
			continue // from == earliest cannot get here: Next(earliest) is first, which is <= now
		}
		latest = t
		for n := s.Next(latest); !n.IsZero() && !n.After(now); n = s.Next(n) {
			latest = n
		}
		return latest, !latest.Equal(first), true
	}
}
