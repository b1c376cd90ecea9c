package keepalive

// PostgresParams returns the keywords and values of a PostgreSQL connection
// string, in order, as ParsePostgres reads them: for the tests to compare a
// string with what ParsePostgres returns for it.
func PostgresParams(connString string) ([][2]string, error) {
	var params []pgParam
	var err error
	if n := pgURIPrefixLen(connString); n > 0 {
		params, _, err = pgURIParams(connString, n)
	} else {
		params, _, err = pgKeywordParams(connString)
	}
	kv := make([][2]string, len(params))
	for i, p := range params {
		kv[i] = [2]string{p.key, p.value}
	}
	return kv, err
}

// PostgresKeys are the options ParsePostgres reads and removes.
var PostgresKeys = pgKeys[:]

// CheckSpan is checkSpan, the rule Validate applies where the kernel adds
// Idle + Interval*Count in a bounded counter (macOS and the BSDs), exported
// so that its arithmetic is tested on every platform.
var CheckSpan = checkSpan

// The arithmetic of illumos's and Oracle Solaris's keepalive abort threshold
// (abortthreshold.go), for the tests of package keepalive_test on every
// platform.
var (
	CheckThresholdPair = checkThresholdPair
	ThresholdPair      = thresholdPair
	BackoffDetection   = backoffDetection
)
