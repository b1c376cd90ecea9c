//go:build race

package audit_test

// raceEnabled reports that the race detector is on: it slows the audit
// several times, so its duration says nothing about a production build.
const raceEnabled = true
