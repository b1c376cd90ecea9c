package keepalive

// CheckSpan is checkSpan, the rule Validate applies where the kernel adds
// Idle + Interval*Count in a bounded counter (macOS and the BSDs), exported
// so that its arithmetic is tested on every platform.
var CheckSpan = checkSpan
