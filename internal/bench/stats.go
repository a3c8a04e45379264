package bench

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// ErrNoSamples: a statistic was asked of an empty sample set.
var ErrNoSamples = errors.New("bench: no samples")

// Value is one figure: a measured number with its unit, or null with the
// reason it could not be measured. Its JSON form is
// {"value": 12.5, "unit": "MB/s"} or {"value": null, "unit": "MB/s", "reason": "..."}.
type Value struct {
	V      *float64 `json:"value"`
	Unit   string   `json:"unit,omitempty"`
	Reason string   `json:"reason,omitempty"`
}

// Measured returns a measured Value. A NaN or infinite v is not a
// measurement and becomes Unmeasured.
func Measured(v float64, unit string) Value {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return Unmeasured(unit, fmt.Sprintf("not a finite number (%v)", v))
	}
	return Value{V: &v, Unit: unit}
}

// Unmeasured returns a null Value carrying the reason.
func Unmeasured(unit, reason string) Value {
	if reason == "" {
		reason = "not measured"
	}
	return Value{Unit: unit, Reason: reason}
}

// OK reports whether the value was measured.
func (v Value) OK() bool { return v.V != nil }

// Float returns the value, or NaN when unmeasured.
func (v Value) Float() float64 {
	if v.V == nil {
		return math.NaN()
	}
	return *v.V
}

// Ratio returns num/den as a unitless Value; unmeasured when either side is,
// or when den is not positive.
func Ratio(num, den Value) Value {
	switch {
	case !num.OK():
		return Unmeasured("", "numerator unmeasured: "+num.Reason)
	case !den.OK():
		return Unmeasured("", "limit unmeasured: "+den.Reason)
	case *den.V <= 0:
		return Unmeasured("", fmt.Sprintf("limit is %v", *den.V))
	}
	return Measured(*num.V / *den.V, "")
}

// Percentile returns the p-th percentile (0 < p ≤ 100) of samples by the
// nearest-rank method: the smallest sample such that at least p % of the
// samples are ≤ it, i.e. sorted[ceil(p/100·n)−1]. samples is not modified.
func Percentile(samples []float64, p float64) (float64, error) {
	if len(samples) == 0 {
		return 0, ErrNoSamples
	}
	if !(p > 0 && p <= 100) {
		return 0, fmt.Errorf("bench: percentile %v: out of (0, 100]", p)
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	if rank < 1 {
		rank = 1
	}
	return s[rank-1], nil
}

// Median returns the middle sample, or the mean of the two middle samples
// for an even count. samples is not modified.
func Median(samples []float64) (float64, error) {
	if len(samples) == 0 {
		return 0, ErrNoSamples
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2], nil
	}
	return (s[n/2-1] + s[n/2]) / 2, nil
}

// Summary is min / median / max of one figure over the repetitions that
// measured it. N counts those repetitions; when N is 0 every statistic is
// null and Reason says why.
type Summary struct {
	Min    *float64 `json:"min"`
	Median *float64 `json:"median"`
	Max    *float64 `json:"max"`
	N      int      `json:"n"`
	Unit   string   `json:"unit,omitempty"`
	Reason string   `json:"reason,omitempty"`
}

// Summarize builds the Summary of vals, skipping unmeasured ones. With none
// measured, the reason of the first is kept.
func Summarize(vals []Value) Summary {
	var xs []float64
	var s Summary
	for _, v := range vals {
		if s.Unit == "" {
			s.Unit = v.Unit
		}
		if v.OK() {
			xs = append(xs, *v.V)
		} else if s.Reason == "" {
			s.Reason = v.Reason
		}
	}
	if len(xs) == 0 {
		if s.Reason == "" {
			s.Reason = "no repetition measured"
		}
		return s
	}
	s.Reason = ""
	lo, hi := slices.Min(xs), slices.Max(xs)
	med, _ := Median(xs)
	s.Min, s.Median, s.Max, s.N = &lo, &med, &hi, len(xs)
	return s
}

// MedianValue returns the summary's median as a Value.
func (s Summary) MedianValue() Value {
	if s.Median == nil {
		return Unmeasured(s.Unit, s.Reason)
	}
	return Measured(*s.Median, s.Unit)
}

// Differs reports whether two measurements of one limit differ by more than
// frac, relative to the smaller: max/min − 1 > frac. Unmeasured or
// non-positive values never count as differing (they are reported as
// unmeasured instead).
func Differs(a, b Value, frac float64) bool {
	if !a.OK() || !b.OK() || *a.V <= 0 || *b.V <= 0 {
		return false
	}
	lo, hi := min(*a.V, *b.V), max(*a.V, *b.V)
	return hi/lo-1 > frac
}

// mbPerSec converts bytes over seconds to MB/s (1 MB = 10^6 bytes).
func mbPerSec(bytes int64, seconds float64) Value {
	if seconds <= 0 {
		return Unmeasured("MB/s", fmt.Sprintf("elapsed time %vs", seconds))
	}
	return Measured(float64(bytes)/1e6/seconds, "MB/s")
}
