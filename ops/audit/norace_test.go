//go:build !race

package audit_test

// raceEnabled reports that the race detector is on.
const raceEnabled = false
