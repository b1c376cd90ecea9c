#!/usr/bin/env bash
# Compares dialing and accepting through keepalive with the standard library
# configured to the same effect, and measures detection time against its
# bound. Writes the results, in markdown, to BENCHMARKS.md (or the file named
# by the first argument).
#
#   scripts/bench.sh [OUT]
#
# As root it also measures what a policy of ops/enforce costs: connections
# on loopback with a policy and without (BenchmarkConnect, COUNT rounds in
# which the two take turns), and putting a policy in force on a cgroup whose
# processes hold up to 100,000 connection ends (BenchmarkEnforce, once), in
# a section of its own. As root too, in a section of its own, it measures
# an audit of a host with 100,000 connections (ops/audit's BenchmarkAudit
# and the exporter's BenchmarkScrape, once each): through the BPF
# iterator, through pidfd_getfd and with ss -tnoip, side by side in one
# run, the system calls counted with strace where it is installed.
# ONLY=enforce or ONLY=audit measures that section alone and replaces it
# in OUT (or adds it there), leaving the rest as it was.
#
# Environment: COUNT (default 10) rounds of benchmarks; BENCHTIME (default
# 1s) per benchmark and round; ENFORCE_BENCHTIME (default 5x) for
# BenchmarkEnforce; AUDIT_BENCHTIME (default 5x) for BenchmarkAudit and
# BenchmarkScrape. The rounds run one after another, each running
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
only=${ONLY:-}
case $only in
"" | enforce | audit) ;;
*) echo "ONLY is empty, enforce or audit, not $only" >&2; exit 2 ;;
esac
if [ -n "$only" ] && [ ! -f "$out" ]; then
	echo "ONLY=$only replaces a section of $out, which does not exist" >&2
	exit 2
fi

export PATH="$PATH:$(go env GOPATH)/bin"
if ! command -v benchstat >/dev/null; then
	echo "== installing benchstat" >&2
	go install golang.org/x/perf/cmd/benchstat@latest
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# library measures the library against the standard library and writes
# OUT.
library() {
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
}

# enforce measures what a policy costs and writes its section, in
# markdown, to standard output.
enforce() {
	echo "## A policy on a cgroup (ops/enforce)"
	echo
	if [ "$(id -u)" -ne 0 ]; then
		echo "Not measured: the benchmarks of ops/enforce need root (BPF, cgroups)."
		echo
		return
	fi
	echo "== building ops/enforce's test binary" >&2
	go test -c -o "$tmp/enforce.test" ./ops/enforce
	local load
	load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)
	echo "== $count rounds of BenchmarkConnect, -benchtime $benchtime" >&2
	for i in $(seq "$count"); do
		echo "   round $i" >&2
		(cd ops/enforce && "$tmp/enforce.test" -test.run '^$' -test.bench '^BenchmarkConnect$' \
			-test.benchtime "$benchtime") >"$tmp/connect-round.txt"
		if [ "$i" -eq 1 ]; then
			cat "$tmp/connect-round.txt"
		else
			grep '^Benchmark' "$tmp/connect-round.txt"
		fi >>"$tmp/connect.txt"
	done
	benchstat -col /policy "$tmp/connect.txt" >"$tmp/connect-stat.txt" 2>&1 || true
	echo "== BenchmarkEnforce, -benchtime ${ENFORCE_BENCHTIME:-5x}" >&2
	(cd ops/enforce && "$tmp/enforce.test" -test.run '^$' -test.bench '^BenchmarkEnforce$' \
		-test.benchtime "${ENFORCE_BENCHTIME:-5x}" -test.timeout 30m) >"$tmp/enforce.txt"

	echo "Written by \`scripts/bench.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); $(go version | cut -d' ' -f3-),"
	echo "$(uname -sr), $(nproc) cores; load average at start: $load."
	echo
	echo "### Connections with a policy and without"
	echo
	echo "BenchmarkConnect: the benchmark process, in a cgroup with the policy (all five"
	echo "options) or in one without, dials and accepts on loopback, one connection after"
	echo "another; $count rounds of -benchtime $benchtime, the two cases taking turns in each."
	echo "Per connection (both ends), medians of the rounds; cpu is the process's user plus"
	echo "system CPU time (getrusage), which holds what the kernel does for its sockets, the"
	echo "policy's programs included. The programs' runs and the time spent in them come from"
	echo "the kernel's BPF statistics, turned on for both cases."
	echo
	awk '
		/^BenchmarkConnect\/policy=/ {
			p = $1; sub(/^BenchmarkConnect\/policy=/, "", p); sub(/-[0-9]+$/, "", p)
			for (i = 3; i < NF; i += 2) { n[p, $(i + 1)]++; v[p, $(i + 1), n[p, $(i + 1)]] = $i }
		}
		function median(p, u,    k, i, j, t, a) {
			k = n[p, u]
			if (k == 0) return ""
			for (i = 1; i <= k; i++) a[i] = v[p, u, i]
			for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
			return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
		}
		END {
			wn = median("none", "ns/op"); wo = median("on", "ns/op")
			cn = median("none", "cpu-ns/op"); co = median("on", "cpu-ns/op")
			print "| per connection | no policy | policy | policy / no policy |"
			print "| --- | ---: | ---: | ---: |"
			printf "| connections per second (wall) | %.0f | %.0f | %.3f |\n", 1e9 / wn, 1e9 / wo, wn / wo
			printf "| wall time | %.1f µs | %.1f µs | %.3f |\n", wn / 1000, wo / 1000, wo / wn
			printf "| CPU time (user + system) | %.1f µs | %.1f µs | %.3f |\n", cn / 1000, co / 1000, co / cn
			printf "| heap allocations | %g | %g | |\n", median("none", "mallocs/op"), median("on", "mallocs/op")
			printf "| sock_ops program runs | | %g | |\n", median("on", "sockops-runs/op")
			printf "| setsockopt program runs | | %g | |\n", median("on", "setsockopt-runs/op")
			printf "| time in the programs | | %.2f µs | |\n", median("on", "bpf-ns/op") / 1000
		}
	' "$tmp/connect.txt"
	echo
	echo "<details><summary>benchstat output</summary>"
	echo
	echo '```'
	cat "$tmp/connect-stat.txt"
	echo '```'
	echo
	echo "</details>"
	echo
	echo "### Putting a policy in force on connections that exist"
	echo
	echo "BenchmarkEnforce: processes in the cgroup hold 2 × pairs connection ends on"
	echo "loopback; each run puts a new policy in force on the cgroup: it loads the programs,"
	echo "swaps them into the policy's links and runs the iterator, which sets every end."
	echo "first is the first run, which attaches; the others replace."
	echo
	echo "| connection ends | per enforce | first |"
	echo "| ---: | ---: | ---: |"
	awk '
		/^BenchmarkEnforce\/pairs=/ {
			p = $1; sub(/^BenchmarkEnforce\/pairs=/, "", p); sub(/-[0-9]+$/, "", p)
			ns = ""; first = ""
			for (i = 3; i < NF; i += 2) { if ($(i + 1) == "ns/op") ns = $i; if ($(i + 1) == "first-ms") first = $i }
			printf "| %d | %.1f ms | %.1f ms |\n", 2 * p, ns / 1e6, first
		}
	' "$tmp/enforce.txt"
	echo
}

# audit measures an audit of a host with 100,000 connections and writes
# its section, in markdown, to standard output.
audit() {
	echo "## Audit of 100,000 connections (ops/audit)"
	echo
	if [ "$(id -u)" -ne 0 ]; then
		echo "Not measured: the BPF iterator needs root (CAP_BPF, CAP_PERFMON)."
		echo
		return
	fi
	echo "== building ops/audit's and the command's test binaries" >&2
	go test -c -o "$tmp/audit.test" ./ops/audit
	go test -c -o "$tmp/cmd.test" ./cmd/keepalive
	local load
	load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)
	# Helpers hold up to 8,000 pairs each, two descriptors a pair.
	ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
	echo "== BenchmarkAudit, -benchtime ${AUDIT_BENCHTIME:-5x}" >&2
	(cd ops/audit && "$tmp/audit.test" -test.run '^$' -test.bench '^BenchmarkAudit$' \
		-test.benchtime "${AUDIT_BENCHTIME:-5x}" -test.timeout 30m) >"$tmp/audit.txt"
	echo "== BenchmarkScrape, -benchtime ${AUDIT_BENCHTIME:-5x}" >&2
	(cd cmd/keepalive && "$tmp/cmd.test" -test.run '^$' -test.bench '^BenchmarkScrape$' \
		-test.benchtime "${AUDIT_BENCHTIME:-5x}" -test.timeout 30m) >"$tmp/scrape.txt"

	echo "Written by \`scripts/bench.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); $(go version | cut -d' ' -f3-),"
	echo "$(uname -sr), $(nproc) cores; load average at start: $load."
	echo
	echo "BenchmarkAudit: helpers hold 50,000 connection pairs on loopback (100,000"
	echo "connections, with those of the rest of the machine); each way of listing them"
	echo "runs ${AUDIT_BENCHTIME:-5x}, one after another in one run. A full audit lists every"
	echo "connection through sock_diag, finds its process in \`/proc/PID/fd\` and reads its"
	echo "values: through the BPF iterator (bpf_getsockopt in the kernel), or through"
	echo "pidfd_getfd and getsockopt on each duplicate; kernel-only reads no values (what"
	echo "both share). CPU is user plus system time (getrusage; for ss, the child's), per"
	echo "run. System calls are counted by \`strace -f -c\` over one more run in a process"
	echo "of its own (strace slows a run, but does not change the count). Allocations are"
	echo "the Go heap's over the timed runs, per run."
	echo
	awk '
		function num(name, unit,    i) {
			for (i = 3; i < NF; i += 2) if ($(i + 1) == unit) return $i
			return ""
		}
		/^BenchmarkAudit\// {
			w = $1; sub(/^BenchmarkAudit\//, "", w); sub(/-[0-9]+$/, "", w)
			order[++n] = w
			wall[w] = num(w, "ns/op") / 1e9; cpu[w] = num(w, "cpu-ms/op") / 1000
			sys[w] = num(w, "syscalls/op"); conns[w] = num(w, "conns/op")
			allocs[w] = num(w, "allocs/op"); bytes[w] = num(w, "B/op")
		}
		function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "" : sprintf("%.2f", a / b) }
		END {
			p = "audit_pidfd"
			print "| way | connections | wall | CPU | CPU / pidfd_getfd | system calls | system calls / pidfd_getfd | heap allocations | MB allocated |"
			print "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
			for (i = 1; i <= n; i++) {
				w = order[i]; name = w; gsub(/_/, " ", name)
				printf "| %s | %d | %.2f s | %.2f s | %s | %s | %s | %s | %s |\n", name, conns[w], wall[w], cpu[w],
					ratio(cpu[w], cpu[p]), sys[w], ratio(sys[w], sys[p]),
					allocs[w] == "" ? "" : allocs[w], bytes[w] == "" ? "" : sprintf("%.0f", bytes[w] / 1e6)
			}
		}
	' "$tmp/audit.txt"
	echo
	echo "BenchmarkScrape: a scrape of \`keepalive exporter\` on such a host, aggregates only"
	echo "through each method, and per connection (5 series each), against ss -tnoip in the"
	echo "same run; CPU per scrape, and the answer's size gzipped as Prometheus asks for it."
	echo
	echo "| way | wall | CPU | CPU / pidfd_getfd | answer (gzip) |"
	echo "| --- | ---: | ---: | ---: | ---: |"
	awk '
		function num(unit,    i) {
			for (i = 3; i < NF; i += 2) if ($(i + 1) == unit) return $i
			return ""
		}
		/^BenchmarkScrape\// {
			w = $1; sub(/^BenchmarkScrape\//, "", w); sub(/-[0-9]+$/, "", w)
			order[++n] = w; wall[w] = num("ns/op") / 1e9; cpu[w] = num("cpu-ms/op") / 1000; size[w] = num("bytes/scrape")
		}
		END {
			p = "scrape_pidfd"
			for (i = 1; i <= n; i++) {
				w = order[i]; name = w; gsub(/_/, " ", name)
				printf "| %s | %.2f s | %.2f s | %s | %s |\n", name, wall[w], cpu[w], cpu[p] ? sprintf("%.2f", cpu[w] / cpu[p]) : "",
					size[w] == "" ? "" : size[w] < 1e6 ? sprintf("%.1f kB", size[w] / 1e3) : sprintf("%.2f MB", size[w] / 1e6)
			}
		}
	' "$tmp/scrape.txt"
	echo
	echo "<details><summary>go test output</summary>"
	echo
	echo '```'
	grep -h '^Benchmark' "$tmp/audit.txt" "$tmp/scrape.txt"
	echo '```'
	echo
	echo "</details>"
	echo
}

# replace HEADING FILE: OUT with its section HEADING (up to the next
# heading of its level) replaced by FILE, or FILE added at its end.
replace() {
	if grep -qF -- "$1" "$out"; then
		awk -v heading="$1" -v section="$2" '
			/^## / && inside { inside = 0 }
			index($0, heading) == 1 { inside = 1; while ((getline line < section) > 0) print line; next }
			!inside
		' "$out" >"$tmp/out.md"
		mv "$tmp/out.md" "$out"
	else
		cat "$2" >>"$out"
	fi
}

case $only in
enforce)
	enforce >"$tmp/enforce.md"
	replace "## A policy on a cgroup" "$tmp/enforce.md"
	;;
audit)
	audit >"$tmp/audit.md"
	replace "## Audit of 100,000 connections" "$tmp/audit.md"
	;;
*)
	library
	enforce >>"$out"
	audit >>"$out"
	;;
esac

echo "== wrote $out" >&2
cat "$out"
