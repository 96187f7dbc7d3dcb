// Package scaling is the replica arithmetic of a WorkerPool: given the backlog of the pool's queues, its recent
// history, the current replica count and the pool's scaling spec, it returns how many workers the pool should
// run and why. It is pure — no I/O, no clock, no Kubernetes types — so every rule is a table test.
//
// The semantics are KEDA's (activation, cooldown to zero) on top of the HorizontalPodAutoscaler's (tolerance,
// scale-down stabilization, scale-up rate limit), for one external metric with an AverageValue target:
//
//   - backlog is pgmq's queue_length summed over the pool's queues (messages in flight included, so a busy
//     worker keeps its pool alive);
//   - proposal = ceil(backlog / targetBacklogPerReplica);
//   - the current count is kept while backlog / (target × current) is within ±10% of 1 (HPA's tolerance);
//   - a pool at zero gets its first replicas only when backlog > activationBacklog; once running it stays
//     active while the backlog is above zero, and goes to zero (minReplicas 0) only cooldown after the last
//     active reading — until then the floor is one replica;
//   - scale-down follows the highest proposal seen within the stabilization window, so a saw-tooth backlog
//     does not make the pool flap; scale-up is immediate but limited to max(4 pods, 100%) per 15 s, counted
//     from the replica count at the start of that period (HPA's default scale-up policies);
//   - the result is clamped to [minReplicas, maxReplicas];
//   - when the backlog cannot be read the current count is kept, or FallbackReplicas after FailureThreshold
//     consecutive failures when set.
package scaling

import (
	"fmt"
	"math"
	"time"
)

// Defaults of Spec (DefaultSpec). They match the WorkerPool API's defaults and HPA's default behaviour.
const (
	DefaultMinReplicas             = 0
	DefaultMaxReplicas             = 10
	DefaultTargetBacklogPerReplica = 10
	DefaultActivationBacklog       = 0
	DefaultCooldown                = 300 * time.Second
	// DefaultScaleDownStabilization is HPA's default scale-down stabilization window.
	DefaultScaleDownStabilization = 300 * time.Second
	// DefaultTolerancePercent is HPA's default tolerance (--horizontal-pod-autoscaler-tolerance=0.1).
	DefaultTolerancePercent = 10
	// DefaultFailureThreshold is KEDA's default fallback failure threshold.
	DefaultFailureThreshold = 3
)

// DefaultScaleUp is HPA's default scale-up behaviour: at most max(4 pods, 100%) more per 15 seconds.
var DefaultScaleUp = RateLimit{Pods: 4, Percent: 100, Period: 15 * time.Second}

// RateLimit bounds scale-up: within any Period, the count may grow to at most
// max(start + Pods, ceil(start × (1 + Percent/100))), where start is the count at the beginning of the period.
// A zero Period disables the limit.
type RateLimit struct {
	Pods    int32
	Percent int32
	Period  time.Duration
}

// Spec is a pool's scaling configuration. Zero values are literal (a zero Cooldown scales to zero at once, a zero
// TolerancePercent means no tolerance); start from DefaultSpec to get the documented defaults.
type Spec struct {
	MinReplicas int32
	MaxReplicas int32
	// TargetBacklogPerReplica is the backlog one replica is meant to carry; values below 1 count as 1.
	TargetBacklogPerReplica int64
	// ActivationBacklog: a pool at zero replicas is started only when the backlog is above it.
	ActivationBacklog int64
	// Cooldown: a pool goes to zero (MinReplicas 0 only) this long after it was last active.
	Cooldown time.Duration
	// ScaleDownStabilization: scale-down follows the highest proposal inside this window.
	ScaleDownStabilization time.Duration
	// ScaleUp limits how fast the count grows.
	ScaleUp RateLimit
	// TolerancePercent: the count is kept while backlog/(target × current) is within 1 ± TolerancePercent/100.
	TolerancePercent int32
	// FallbackReplicas, when set, is used after FailureThreshold consecutive failures to read the backlog.
	FallbackReplicas *int32
	// FailureThreshold is the number of consecutive failures before FallbackReplicas applies (at least 1).
	FailureThreshold int32
}

// DefaultSpec returns the documented defaults.
func DefaultSpec() Spec {
	return Spec{
		MinReplicas:             DefaultMinReplicas,
		MaxReplicas:             DefaultMaxReplicas,
		TargetBacklogPerReplica: DefaultTargetBacklogPerReplica,
		ActivationBacklog:       DefaultActivationBacklog,
		Cooldown:                DefaultCooldown,
		ScaleDownStabilization:  DefaultScaleDownStabilization,
		ScaleUp:                 DefaultScaleUp,
		TolerancePercent:        DefaultTolerancePercent,
		FailureThreshold:        DefaultFailureThreshold,
	}
}

// normalized makes a Spec safe to compute with, whatever its values: min non-negative, max at least 1 and at least
// min (as the API enforces), target at least 1, threshold at least 1, durations and tolerance non-negative.
func (s Spec) normalized() Spec {
	s.MinReplicas = max(s.MinReplicas, 0)
	s.MaxReplicas = max(s.MaxReplicas, s.MinReplicas, 1)
	s.TargetBacklogPerReplica = max(s.TargetBacklogPerReplica, 1)
	s.ActivationBacklog = max(s.ActivationBacklog, 0)
	s.Cooldown = max(s.Cooldown, 0)
	s.ScaleDownStabilization = max(s.ScaleDownStabilization, 0)
	s.ScaleUp.Pods = max(s.ScaleUp.Pods, 0)
	s.ScaleUp.Percent = max(s.ScaleUp.Percent, 0)
	s.ScaleUp.Period = max(s.ScaleUp.Period, 0)
	s.TolerancePercent = max(s.TolerancePercent, 0)
	s.FailureThreshold = max(s.FailureThreshold, 1)
	return s
}

// Sample is one successful backlog reading.
type Sample struct {
	Time    time.Time
	Backlog int64
}

// Event is one change of the replica count the caller made (From → To at Time); the scale-up rate limit counts
// them.
type Event struct {
	Time     time.Time
	From, To int32
}

// Input is everything one decision looks at.
type Input struct {
	Now time.Time
	// Current is the replica count now (the Deployment's spec.replicas).
	Current int32
	// Backlog is the reading taken now. Ignored when MetricsFailures > 0.
	Backlog int64
	// MetricsFailures is the number of consecutive failed readings, this one included; 0 when Backlog is fresh.
	MetricsFailures int
	// History holds earlier readings, in any order; only those inside the stabilization window count.
	History []Sample
	// LastActive is the last time the pool was active (zero: never, which counts as cooled down, as in KEDA).
	LastActive time.Time
	// Events are the recent replica changes, for the scale-up rate limit.
	Events []Event
}

// Reason says why Desired is what it is.
type Reason string

// Reasons of a Decision.
const (
	// ReasonIdle: the pool is at zero and the backlog is not above activationBacklog.
	ReasonIdle Reason = "BelowActivation"
	// ReasonActivated: the pool was at zero and the backlog went above activationBacklog.
	ReasonActivated Reason = "Activated"
	// ReasonScaleUp: the backlog needs more replicas.
	ReasonScaleUp Reason = "BacklogAboveTarget"
	// ReasonScaleDown: the backlog has needed fewer replicas for the whole stabilization window.
	ReasonScaleDown Reason = "BacklogBelowTarget"
	// ReasonAtTarget: the proposal equals the current count, or is within the tolerance.
	ReasonAtTarget Reason = "WithinTolerance"
	// ReasonStabilizing: the proposal is lower, but a higher one inside the stabilization window holds the count.
	ReasonStabilizing Reason = "Stabilizing"
	// ReasonCoolingDown: the queues are empty; the pool keeps one replica until the cooldown has passed.
	ReasonCoolingDown Reason = "CoolingDown"
	// ReasonCooledDown: the pool was inactive for the whole cooldown and goes to zero.
	ReasonCooledDown Reason = "CooledDown"
	// ReasonMetricsUnavailable: the backlog could not be read; the current count is kept.
	ReasonMetricsUnavailable Reason = "MetricsUnavailable"
	// ReasonFallback: the backlog could not be read FailureThreshold times in a row; FallbackReplicas applies.
	ReasonFallback Reason = "Fallback"
)

// Limit says which bound cut the count (HPA's ScalingLimited reasons).
type Limit string

// Limits of a Decision.
const (
	LimitNone        Limit = ""
	LimitMaxReplicas Limit = "TooManyReplicas"
	LimitMinReplicas Limit = "TooFewReplicas"
	LimitScaleUpRate Limit = "ScaleUpLimit"
)

// Decision is the outcome of Decide.
type Decision struct {
	// Desired is the replica count to run, always within [MinReplicas, MaxReplicas] of the normalized spec.
	Desired int32
	// Current is the count the decision started from.
	Current int32
	// Backlog is the reading the decision used (0 when metrics failed).
	Backlog int64
	// Proposal is ceil(Backlog / TargetBacklogPerReplica), before tolerance, stabilization and limits.
	Proposal int32
	// Unbounded is the count before the scale-up limit and the [min, max] clamp.
	Unbounded int32
	// MetricsOK is false when the backlog could not be read.
	MetricsOK bool
	// Active: the backlog is above activationBacklog, or above zero while the pool runs. Meaningless when
	// !MetricsOK.
	Active bool
	Reason Reason
	Limit  Limit
	// Bound is the value of the bound named by Limit.
	Bound int32
}

// Decide computes the desired replica count. It never panics, whatever the input.
func Decide(spec Spec, in Input) Decision {
	s := spec.normalized()
	cur := max(in.Current, 0)
	d := Decision{Current: cur}

	if in.MetricsFailures > 0 {
		d.Reason, d.Unbounded = ReasonMetricsUnavailable, cur
		if s.FallbackReplicas != nil && in.MetricsFailures >= int(s.FailureThreshold) {
			d.Reason, d.Unbounded = ReasonFallback, max(*s.FallbackReplicas, 0)
		}
		d.Desired, d.Limit, d.Bound = clamp(d.Unbounded, s.MinReplicas, s.MaxReplicas, LimitMinReplicas, LimitMaxReplicas)
		return d
	}

	d.MetricsOK = true
	d.Backlog = max(in.Backlog, 0)
	d.Active = d.Backlog > s.ActivationBacklog || (cur > 0 && d.Backlog > 0)
	d.Proposal = proposal(d.Backlog, s.TargetBacklogPerReplica)

	var desired int32
	switch {
	case cur == 0 && d.Active:
		desired, d.Reason = max(d.Proposal, 1), ReasonActivated
	case cur == 0:
		desired, d.Reason = 0, ReasonIdle
	case !d.Active && s.MinReplicas == 0 && cooledDown(in.LastActive, in.Now, s.Cooldown):
		// KEDA scales to zero straight after the cooldown, without the HPA's stabilization.
		desired, d.Reason = 0, ReasonCooledDown
	default:
		desired = d.Proposal
		if withinTolerance(d.Backlog, s.TargetBacklogPerReplica, cur, s.TolerancePercent) {
			desired = cur
		}
		// The queues are empty but the cooldown is not over: KEDA leaves the pool to an HPA whose floor is one
		// replica. (With minReplicas > 0 the clamp below raises the count instead.)
		waiting := desired < 1 && s.MinReplicas == 0
		if waiting {
			desired = 1
		}
		switch {
		case desired == cur && waiting:
			d.Reason = ReasonCoolingDown
		case desired == cur:
			d.Reason = ReasonAtTarget
		case desired > cur:
			d.Reason = ReasonScaleUp
		default:
			// HPA: the recommendation may not go below the highest one inside the window (nor above current).
			if held := min(cur, max(desired, windowMax(in.History, in.Now, s))); held > desired {
				desired, d.Reason = held, ReasonStabilizing
			} else {
				d.Reason = ReasonScaleDown
			}
		}
	}
	d.Unbounded = desired

	// Scale-up rate limit, then [min, max]; report whichever bound cut the count (HPA's order).
	upper, upperLimit := s.MaxReplicas, LimitMaxReplicas
	if desired > cur {
		if limit := scaleUpLimit(cur, in.Events, in.Now, s.ScaleUp); limit < upper {
			// minReplicas wins over the rate limit (HPA raises a count below min without looking at rates).
			upper, upperLimit = max(limit, s.MinReplicas), LimitScaleUpRate
		}
	}
	d.Desired, d.Limit, d.Bound = clamp(desired, s.MinReplicas, upper, LimitMinReplicas, upperLimit)
	return d
}

func clamp(v, lo, hi int32, loLimit, hiLimit Limit) (int32, Limit, int32) {
	switch {
	case v > hi:
		return hi, hiLimit, hi
	case v < lo:
		return lo, loLimit, lo
	}
	return v, LimitNone, 0
}

// proposal is ceil(backlog/target), capped at MaxInt32.
func proposal(backlog, target int64) int32 {
	if backlog <= 0 {
		return 0
	}
	q := backlog / target
	if backlog%target != 0 {
		q++
	}
	return int32(min(q, math.MaxInt32))
}

// withinTolerance reports |backlog/(target×current) − 1| ≤ tol/100 in exact integer arithmetic (HPA compares the
// unrounded usage ratio; floats would put 110/100 just outside a 10% band).
func withinTolerance(backlog, target int64, current, tolPercent int32) bool {
	if current <= 0 {
		return false
	}
	// target ≥ 1 and current ≤ MaxInt32 after normalization; target×current may still overflow int64.
	if target > math.MaxInt64/int64(current) {
		return false // the band is beyond any backlog an int64 can hold; treat as outside
	}
	capacity := target * int64(current)
	diff := backlog - capacity // backlog ≥ 0, capacity > 0: no overflow
	if diff < 0 {
		diff = -diff
	}
	// diff ≤ capacity × tol/100  ⇔  diff×100 ≤ capacity×tol (both sides non-negative)
	hi, lo := mul64(capacity, int64(tolPercent))
	dhi, dlo := mul64(diff, 100)
	return dhi < hi || (dhi == hi && dlo <= lo)
}

// mul64 multiplies two non-negative int64 values into a 128-bit (hi, lo) pair.
func mul64(a, b int64) (uint64, uint64) {
	ua, ub := uint64(a), uint64(b)
	aHi, aLo := ua>>32, ua&0xffffffff
	bHi, bLo := ub>>32, ub&0xffffffff
	lo := aLo * bLo
	mid1 := aHi * bLo
	mid2 := aLo * bHi
	hi := aHi * bHi
	carry := (lo>>32 + mid1&0xffffffff + mid2&0xffffffff) >> 32
	return hi + mid1>>32 + mid2>>32 + carry, lo + mid1<<32 + mid2<<32
}

func cooledDown(lastActive, now time.Time, cooldown time.Duration) bool {
	return lastActive.IsZero() || !now.Before(lastActive.Add(cooldown))
}

// windowMax is the highest proposal among the samples taken inside (now − window, ...], or 0.
func windowMax(history []Sample, now time.Time, s Spec) int32 {
	cutoff := now.Add(-s.ScaleDownStabilization)
	var m int32
	for _, h := range history {
		if h.Time.After(cutoff) {
			m = max(m, proposal(h.Backlog, s.TargetBacklogPerReplica))
		}
	}
	return m
}

// scaleUpLimit is HPA's calculateScaleUpLimitWithScalingRules with the policies Pods and Percent selected by
// Max, never below current.
func scaleUpLimit(current int32, events []Event, now time.Time, rl RateLimit) int32 {
	if rl.Period <= 0 {
		return math.MaxInt32
	}
	cutoff := now.Add(-rl.Period)
	var change int64
	for _, e := range events {
		if e.Time.After(cutoff) {
			change += int64(e.To) - int64(e.From)
		}
	}
	start := max(int64(current)-change, 0)
	byPods := start + int64(rl.Pods)
	byPercent := (start*(100+int64(rl.Percent)) + 99) / 100
	limit := max(byPods, byPercent, int64(current))
	return int32(min(limit, math.MaxInt32))
}

// Explain is a one-line, human-readable account of the decision, for events and condition messages.
func (d Decision) Explain(spec Spec) string {
	s := spec.normalized()
	var why string
	switch d.Reason {
	case ReasonMetricsUnavailable:
		why = fmt.Sprintf("backlog unavailable, keeping %d replicas", d.Current)
	case ReasonFallback:
		why = fmt.Sprintf("backlog unavailable %d times in a row, using fallbackReplicas %d", s.FailureThreshold,
			d.Unbounded)
	case ReasonIdle:
		why = fmt.Sprintf("backlog %d is not above activationBacklog %d", d.Backlog, s.ActivationBacklog)
	case ReasonActivated:
		why = fmt.Sprintf("backlog %d is above activationBacklog %d; proposal %d at %d per replica", d.Backlog,
			s.ActivationBacklog, d.Proposal, s.TargetBacklogPerReplica)
	case ReasonCooledDown:
		why = fmt.Sprintf("queues empty for cooldown %s", s.Cooldown)
	case ReasonCoolingDown:
		why = fmt.Sprintf("queues empty; one replica stays until cooldown %s has passed", s.Cooldown)
	case ReasonStabilizing:
		why = fmt.Sprintf("backlog %d proposes %d, held at %d by the highest proposal in the %s stabilization window",
			d.Backlog, d.Proposal, d.Unbounded, s.ScaleDownStabilization)
	case ReasonAtTarget:
		why = fmt.Sprintf("backlog %d is within %d%% of %d replicas at %d per replica", d.Backlog,
			s.TolerancePercent, d.Current, s.TargetBacklogPerReplica)
	default:
		why = fmt.Sprintf("backlog %d at %d per replica proposes %d", d.Backlog, s.TargetBacklogPerReplica,
			d.Proposal)
		if d.Proposal == 0 && d.Unbounded == 1 {
			why += fmt.Sprintf("; one replica stays until the queues have been empty for cooldown %s", s.Cooldown)
		}
	}
	switch d.Limit {
	case LimitMaxReplicas:
		why += fmt.Sprintf("; limited to maxReplicas %d", d.Bound)
	case LimitMinReplicas:
		why += fmt.Sprintf("; raised to minReplicas %d", d.Bound)
	case LimitScaleUpRate:
		why += fmt.Sprintf("; limited to %d by the scale-up rate (max(%d pods, %d%%) per %s)", d.Bound,
			s.ScaleUp.Pods, s.ScaleUp.Percent, s.ScaleUp.Period)
	}
	return why
}
