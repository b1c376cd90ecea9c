#!/usr/bin/env bash
# Compares dialing and accepting through keepalive with the standard library
# configured to the same effect, and measures detection time against its
# bound. Writes the results, in markdown, to BENCHMARKS.md (or the file named
# by the first argument).
#
#   scripts/bench.sh [OUT]
#
# Environment: COUNT (default 10) rounds of benchmarks; BENCHTIME (default
# 1s) per benchmark and round. The rounds run one after another, each running
# every impl once, so that a change in the machine's load during the run
# falls on all impls alike. benchstat is installed with go install when it
# is not on PATH. The detection-time table comes from the vanished-peer and
# firewall tests, which need root, ip and nft; without them the table says
# so.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-BENCHMARKS.md}
count=${COUNT:-10}
benchtime=${BENCHTIME:-1s}

export PATH="$PATH:$(go env GOPATH)/bin"
if ! command -v benchstat >/dev/null; then
	echo "== installing benchstat" >&2
	go install golang.org/x/perf/cmd/benchstat@latest
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== building the test binary" >&2
go test -c -o "$tmp/keepalive.test" .

load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)
echo "== $count rounds of benchmarks, -benchtime $benchtime" >&2
for i in $(seq "$count"); do
	echo "   round $i" >&2
	"$tmp/keepalive.test" -test.run '^$' -test.bench '^Benchmark(Dial|Accept)$' \
		-test.benchtime "$benchtime" >"$tmp/round.txt"
	if [ "$i" -eq 1 ]; then
		cat "$tmp/round.txt"
	else
		grep '^Benchmark' "$tmp/round.txt"
	fi >>"$tmp/bench.txt"
done
benchstat -col /impl "$tmp/bench.txt" >"$tmp/stat.txt"
benchstat -col /impl -format csv "$tmp/bench.txt" >"$tmp/stat.csv" 2>/dev/null

echo "== detection time: go test -race=false -run 'TestVanish|TestFirewall' -v ." >&2
status=0
go test -race=false -count=1 -run 'TestVanish|TestFirewall' -v . >"$tmp/detect.txt" 2>&1 || status=$?

# table UNIT: the benchstat rows of the metric UNIT (sec/op, cpu-sec/op,
# B/op, mallocs/op) as markdown, with each impl's median and its change
# against stdlib.
table() {
	awk -F, -v want="$1" '
		function show(v) {
			if (unit ~ /sec\/op$/) return sprintf("%.1f µs", v * 1e6)
			return sprintf("%g", v)
		}
		$1 == "" && $2 ~ /\/op$/ { unit = $2; next }
		unit != want || $1 == "" || $1 == "geomean" { next }
		$1 ~ /^[A-Za-z]/ && NF >= 11 {
			name = $1; sub(/-[0-9]+$/, "", name)
			printf "| %s | %s ± %s | %s ± %s | %s (%s) | %s ± %s | %s (%s) |\n", name, show($2), $3, show($4), $5, $6, $7, show($8), $9, $10, $11
		}
	' "$tmp/stat.csv"
}

# median IMPL_COLUMN UNIT BENCH: the median benchstat found.
median() {
	awk -F, -v col="$1" -v want="$2" -v bench="$3" '
		$1 == "" && $2 ~ /\/op$/ { unit = $2; next }
		unit == want && $1 ~ ("^" bench "(-[0-9]+)?$") { print $col; exit }
	' "$tmp/stat.csv"
}

# goal DESCRIPTION UNIT BENCH LIMIT: a line saying whether keepalive's median
# is at most stdlib's times LIMIT (or, for a LIMIT of +N, stdlib's plus N),
# and whether benchstat finds the difference
# significant; when it does not (~) and the medians miss the goal, the run
# cannot tell, and the line says so.
goal() {
	local s k sci kci delta p
	s=$(median 2 "$2" "$3")
	sci=$(median 3 "$2" "$3")
	k=$(median 4 "$2" "$3")
	kci=$(median 5 "$2" "$3")
	delta=$(median 6 "$2" "$3")
	p=$(median 7 "$2" "$3")
	awk -v d="$1" -v unit="$2" -v s="$s" -v k="$k" -v sci="$sci" -v kci="$kci" -v limit="$4" -v delta="$delta" -v p="$p" '
		function show(v) {
			if (unit ~ /sec\/op$/) return sprintf("%.1f µs", v * 1e6)
			return sprintf("%g", v)
		}
		BEGIN {
			if (s == "" || k == "") { printf "- %s: no result\n", d; exit }
			bound = (limit ~ /^\+/) ? s + substr(limit, 2) : s * limit
			if (delta != "~") verdict = (k <= bound) ? "met" : "**not met**"
			else if (k <= bound) verdict = "met by the medians; the difference is not significant"
			else verdict = "**not shown**: the medians miss it, but the difference is not significant: the noise is wider than the goal"
			printf "- %s: %s. keepalive %s ± %s, stdlib %s ± %s (medians %+.1f %%; benchstat: %s, %s)\n",
				d, verdict, show(k), kci, show(s), sci, (k / s - 1) * 100, delta, p
		}'
}

{
	echo "# Benchmarks"
	echo
	echo "Written by \`scripts/bench.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
	echo
	echo "- Go: $(go version | cut -d' ' -f3-)"
	echo "- Kernel: $(uname -sr)"
	echo "- CPU: $(grep -m1 '^cpu:' "$tmp/bench.txt" | cut -d' ' -f2- | sed 's/ *$//'), $(nproc) cores; load average at start: $load"
	echo "- $count rounds, -benchtime $benchtime; medians ± their 95 % confidence interval, and p-values, from \`benchstat -col /impl\`"
	echo
	echo "## Dial and accept against the standard library"
	echo
	echo "Loopback; Config{Idle: 30s, Interval: 10s, Count: 4}, and for the standard library"
	echo "net.Dialer / net.ListenConfig{KeepAliveConfig: the same values}. keepalive+usertimeout"
	echo "adds UserTimeout 70s, which the standard library cannot set. cpu is the process's user"
	echo "plus system CPU time (getrusage) per connection; it includes the other side of each"
	echo "connection, dialed or accepted by the same plain net.Dialer or net.ListenConfig for"
	echo "every impl."
	echo
	for unit in cpu-sec/op sec/op mallocs/op B/op; do
		case $unit in
		cpu-sec/op) title="CPU time per connection" ;;
		sec/op) title="Wall time per connection" ;;
		mallocs/op) title="Allocations per connection (the process's heap allocations over the loop, per connection, unrounded)" ;;
		B/op) title="Bytes allocated per connection" ;;
		esac
		echo "### $title"
		echo
		echo "| benchmark | stdlib | keepalive | vs stdlib | keepalive+usertimeout | vs stdlib |"
		echo "| --- | ---: | ---: | ---: | ---: | ---: |"
		table "$unit"
		echo
	done
	echo "### Goals"
	echo
	goal "Dial CPU at most 2 % above the standard library's" cpu-sec/op Dial 1.02
	goal "Dial allocations no more than the standard library's" mallocs/op Dial 1
	goal "Accept CPU no higher than the standard library's" cpu-sec/op Accept 1
	echo
	echo "A change marked ~ is not significant at α = 0.05: the two cannot be told apart."
	echo
	echo "<details><summary>benchstat output</summary>"
	echo
	echo '```'
	cat "$tmp/stat.txt"
	echo '```'
	echo
	echo "</details>"
	echo
	echo "## Detection time against its bound"
	echo
	echo "How long the end with keepalive took to fail with ETIMEDOUT once its peer had gone"
	echo "silent, against Config.DetectionTime (Idle + Interval*Count); measured by"
	echo "\`go test -race=false -run 'TestVanish|TestFirewall' -v .\`."
	echo
	lines=$(grep -c 'detect: ' "$tmp/detect.txt" || true)
	vanish=$(grep -c '^=== RUN   TestVanish' "$tmp/detect.txt" || true)
	if [ "$lines" -gt 0 ]; then
		echo "| test | config | side | bound | measured | ratio |"
		echo "| --- | --- | --- | ---: | ---: | ---: |"
		awk '
			/^=== (RUN|CONT|NAME) / { test = $3; sub(/\/.*/, "", test); next }
			/ detect: / {
				sub(/.* detect: /, "")
				delete f
				for (i = 1; i <= NF; i++) {
					k = $i; sub(/=.*/, "", k)
					v = $i; sub(/^[^=]*=/, "", v)
					f[k] = v
				}
				printf "| %s | %s | %s | %s | %s | %s |\n", test, f["config"], f["side"], f["bound"], f["measured"], f["ratio"]
			}
		' "$tmp/detect.txt"
		echo
	fi
	if [ "$vanish" -eq 0 ]; then
		echo "No TestVanish test exists in this tree yet: the table has only the firewall tests' lines."
		echo
	elif ! grep 'detect: ' "$tmp/detect.txt" | grep -qv 'firewall_linux_test.go'; then
		echo "The TestVanish tests wrote no detect: line (skipped? they need root)."
		echo
	fi
	if [ "$lines" -eq 0 ]; then
		echo "No detect: lines: the tests were skipped (they need root, ip and nft) or did not run."
		echo
	fi
	if [ "$status" -ne 0 ]; then
		echo "**The tests failed (exit status $status):**"
		echo
		echo '```'
		grep -E -- '--- FAIL|Error:|Messages:|^FAIL' "$tmp/detect.txt" | head -40
		echo '```'
		echo
	fi
} >"$out"

echo "== wrote $out" >&2
cat "$out"
