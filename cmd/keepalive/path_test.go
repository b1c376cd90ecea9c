package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive/idletimeout"
)

// suggestOutput is what "keepalive suggest" prints for the path to addr:
// the Config for idleTimeout and detect, and why.
func suggestOutput(t *testing.T, idleTimeout, detect time.Duration, addr string) string {
	t.Helper()
	r := runArgs(context.Background(), "suggest", "-idle-timeout", idleTimeout.String(), "-detect", detect.String())
	require.Equal(t, exitOK, r.code, r.stderr)
	return strings.Replace(r.stdout, " HOST:PORT\n", " "+addr+"\n", 1)
}

// TestPrintPath checks the report for each way a search ends: what was
// kept and lost, and how, then the Config that keepalive suggest prints
// for the longest silence kept.
func TestPrintPath(t *testing.T) {
	const addr = "192.0.2.1:5432"
	for _, tt := range []struct {
		name string
		r    idletimeout.Result
		max  time.Duration // -max; 0 for the default
		head string        // the report down to the Config
		tail string        // after keepalive suggest's output
	}{
		{
			name: "drop",
			r:    idletimeout.Result{Survived: 345 * time.Second, Died: 351 * time.Second, Cause: idletimeout.CauseDrop, Elapsed: 356789 * time.Millisecond, Flows: 331, Passes: 1, Retests: 1},
			head: "path to 192.0.2.1:5432: the idle timeout is more than 5m45s, at most 5m51s\n" +
				"kept:            5m45s of silence (a keepalive probe sent after it was answered)\n" +
				"lost:            5m51s of silence (drop): the keepalive probes went unanswered; something on the path forgets idle flows without a word\n" +
				"took:            5m56.789s, 331 connections, 1 pass; 1 loss tested again, 0 of them lost packets rather than a forgotten flow\n",
		},
		{
			name: "reset",
			r:    idletimeout.Result{Survived: 5 * time.Second, Died: 6 * time.Second, Cause: idletimeout.CauseReset, Elapsed: 6005 * time.Millisecond, Flows: 32, Passes: 1, Retests: 2, Spurious: 2},
			max:  30 * time.Second,
			head: "path to 192.0.2.1:5432: the idle timeout is more than 5s, at most 6s\n" +
				"kept:            5s of silence (a keepalive probe sent after it was answered)\n" +
				"lost:            6s of silence (reset): a reset came back; something on the path, or the server, rejects the flows it forgot\n" +
				"took:            6.005s, 32 connections, 1 pass; 2 losses tested again, 2 of them lost packets rather than a forgotten flow\n",
		},
		{
			name: "server-close",
			r:    idletimeout.Result{Survived: 6 * time.Second, Died: 7002300 * time.Microsecond, Cause: idletimeout.CauseServerClose, Elapsed: 7003 * time.Millisecond, Flows: 32, Passes: 1},
			max:  30 * time.Second,
			head: "path to 192.0.2.1:5432: the server closes idle connections after 7.002s\n" +
				"kept:            6s of silence (a keepalive probe sent after it was answered)\n" +
				"lost:            7.002s of silence (server-close): the server closed the connection itself; keepalive probes do not count for it, only data does\n" +
				"took:            7.003s, 32 connections, 1 pass\n",
			tail: "note: no Config keeps a connection open past 7.002s without data: the server counts only data\n",
		},
		{
			name: "none within -max",
			r:    idletimeout.Result{Survived: 2 * time.Hour, Cause: idletimeout.CauseNone, Elapsed: 7200010 * time.Millisecond, Flows: 331, Passes: 1},
			head: "path to 192.0.2.1:5432: no idle timeout within -max 2h0m0s\n" +
				"kept:            2h0m0s of silence (-max: the longest silence tested)\n" +
				"lost:            none (none): the path keeps idle flows 2h0m0s or longer\n" +
				"took:            2h0m0.01s, 331 connections, 1 pass\n",
		},
		{
			name: "server probes",
			r:    idletimeout.Result{Survived: 15 * time.Second, Heard: 16 * time.Second, Cause: idletimeout.CauseNone, Elapsed: 16 * time.Second, Flows: 42, Passes: 1},
			max:  40 * time.Second,
			head: "path to 192.0.2.1:5432: no idle timeout within 16s, the longest silence measurable here\n" +
				"kept:            15s of silence (a keepalive probe sent after it was answered)\n" +
				"lost:            none (none), within what could be measured\n" +
				"note:            the server sends keepalive probes of its own within 16s of silence: they keep the path open, so no longer silence can be measured from here\n" +
				"took:            16s, 42 connections, 1 pass\n",
		},
		{
			name: "too short for a Config",
			r:    idletimeout.Result{Survived: 2 * time.Second, Died: 3 * time.Second, Cause: idletimeout.CauseDrop, Elapsed: 7500 * time.Millisecond, Flows: 6, Passes: 2},
			max:  10 * time.Second,
			head: "path to 192.0.2.1:5432: the idle timeout is more than 2s, at most 3s\n" +
				"kept:            2s of silence (a keepalive probe sent after it was answered)\n" +
				"lost:            3s of silence (drop): the keepalive probes went unanswered; something on the path forgets idle flows without a word\n" +
				"took:            7.5s, 6 connections, 2 passes\n",
		},
		{
			name: "nothing kept",
			r:    idletimeout.Result{Died: time.Second, Cause: idletimeout.CauseReset, Elapsed: time.Second, Flows: 12, Passes: 1},
			max:  10 * time.Second,
			head: "path to 192.0.2.1:5432: the idle timeout is at most 1s\n" +
				"kept:            no silence of 1s or more\n" +
				"lost:            1s of silence (reset): a reset came back; something on the path, or the server, rejects the flows it forgot\n" +
				"took:            1s, 12 connections, 1 pass\n",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.r.Address = addr
			var out bytes.Buffer
			c, serr := tt.r.Suggest(pathDetect)
			printPath(&env{stdout: &out}, tt.r, idletimeout.Options{Max: tt.max}, c, serr, pathDetect)
			t.Logf("report:\n%s", out.String())
			head, rest, ok := strings.Cut(out.String(), "\nthe Config for this path, as keepalive suggest -idle-timeout "+tt.r.Survived.String()+" -detect 2m0s makes it:\n")
			require.True(t, ok, "no Config part")
			assert.Equal(t, tt.head, head)
			if serr != nil {
				assert.Equal(t, "none: "+lib(serr)+"\n", rest)
				return
			}
			assert.Equal(t, suggestOutput(t, tt.r.Survived, pathDetect, addr)+tt.tail, rest)
		})
	}
}

// TestPathJSON checks the -json object, with and without a Config: every
// field, durations as Go writes them.
func TestPathJSON(t *testing.T) {
	const addr = "192.0.2.1:5432"
	for _, tt := range []struct {
		r    idletimeout.Result
		want map[string]any // without suggest and suggest_error
	}{
		{idletimeout.Result{Survived: 345 * time.Second, Died: 351 * time.Second, Cause: idletimeout.CauseDrop, Elapsed: 356789400 * time.Microsecond, Flows: 331, Passes: 1, Retests: 1},
			map[string]any{"survived": "5m45s", "died": "5m51s", "cause": "drop", "heard": "0s", "elapsed": "5m56.789s", "flows": 331.0, "passes": 1.0, "retests": 1.0, "spurious": 0.0}},
		{idletimeout.Result{Survived: 6 * time.Second, Died: 7002300 * time.Microsecond, Cause: idletimeout.CauseServerClose, Elapsed: 7003 * time.Millisecond, Flows: 32, Passes: 1},
			map[string]any{"survived": "6s", "died": "7.002s", "cause": "server-close", "heard": "0s", "elapsed": "7.003s", "flows": 32.0, "passes": 1.0, "retests": 0.0, "spurious": 0.0}},
		{idletimeout.Result{Survived: 2 * time.Second, Died: 3 * time.Second, Cause: idletimeout.CauseReset, Elapsed: 3 * time.Second, Flows: 12, Passes: 2, Retests: 3, Spurious: 1},
			map[string]any{"survived": "2s", "died": "3s", "cause": "reset", "heard": "0s", "elapsed": "3s", "flows": 12.0, "passes": 2.0, "retests": 3.0, "spurious": 1.0}},
		{idletimeout.Result{Survived: 15 * time.Second, Heard: 16 * time.Second, Cause: idletimeout.CauseNone, Elapsed: 16 * time.Second, Flows: 42, Passes: 1},
			map[string]any{"survived": "15s", "died": "0s", "cause": "none", "heard": "16s", "elapsed": "16s", "flows": 42.0, "passes": 1.0, "retests": 0.0, "spurious": 0.0}},
	} {
		tt.r.Address = addr
		tt.want["address"] = addr
		tt.want["detect"] = "2m0s"
		c, serr := tt.r.Suggest(pathDetect)
		if serr != nil {
			tt.want["suggest_error"] = lib(serr)
		} else {
			tt.want["suggest"] = c.String()
		}
		b, err := json.Marshal(newPathJSON(tt.r, c, serr, pathDetect))
		require.NoError(t, err)
		var got map[string]any
		require.NoError(t, json.Unmarshal(b, &got))
		assert.Equal(t, tt.want, got)
	}
}

// TestPathProgressLine checks the line drawn while a search runs.
func TestPathProgressLine(t *testing.T) {
	for _, tt := range []struct {
		p    idletimeout.Progress
		want string
	}{
		{idletimeout.Progress{Elapsed: 300 * time.Millisecond, Pass: 1, Open: 1}, "0s: 1 connection open; nothing known yet"},
		{idletimeout.Progress{Elapsed: 75500 * time.Millisecond, Pass: 1, Open: 200, Survived: 74 * time.Second}, "1m15s: 200 connections open; kept 1m14s of silence, none lost yet"},
		{idletimeout.Progress{Elapsed: 4 * time.Second, Pass: 1, Open: 5, Died: 3 * time.Second}, "4s: 5 connections open; lost 3s of silence, none kept yet"},
		{idletimeout.Progress{Elapsed: 90 * time.Second, Pass: 2, Open: 8, Survived: 60 * time.Second, Died: 70 * time.Second}, "1m30s, pass 2: 8 connections open; kept 1m0s of silence, lost 1m10s"},
	} {
		assert.Equal(t, tt.want, progressLine(tt.p))
	}
}
