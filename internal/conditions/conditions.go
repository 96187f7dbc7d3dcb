// Package conditions sets metav1.Conditions the way every controller of the project does: always stamped with
// the object's generation, and with the transition time kept when the status did not change.
package conditions

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MaxMessageLength bounds a condition's message, so a long error never bloats an object.
const MaxMessageLength = 1024

// Set adds or updates a condition, with ObservedGeneration = generation. It returns true when anything changed.
func Set(conds *[]metav1.Condition, generation int64, condType string, status metav1.ConditionStatus, reason, message string) bool {
	if len(message) > MaxMessageLength {
		message = message[:MaxMessageLength-3] + "..."
	}
	return meta.SetStatusCondition(conds, metav1.Condition{
		Type:               condType,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: generation,
	})
}

// True is Set with status True.
func True(conds *[]metav1.Condition, generation int64, condType, reason, message string) bool {
	return Set(conds, generation, condType, metav1.ConditionTrue, reason, message)
}

// False is Set with status False.
func False(conds *[]metav1.Condition, generation int64, condType, reason, message string) bool {
	return Set(conds, generation, condType, metav1.ConditionFalse, reason, message)
}

// Remove deletes a condition; it returns true when there was one.
func Remove(conds *[]metav1.Condition, condType string) bool {
	return meta.RemoveStatusCondition(conds, condType)
}

// IsTrue reports whether the condition is present and True.
func IsTrue(conds []metav1.Condition, condType string) bool {
	return meta.IsStatusConditionTrue(conds, condType)
}
