package keepalive

// The arithmetic of illumos's and Oracle Solaris's keepalive abort threshold
// (threshold.go), for the tests of package keepalive_test on every
// platform.
var (
	CheckThresholdPair = checkThresholdPair
	ThresholdPair      = thresholdPair
	BackoffDetection   = backoffDetection
)
