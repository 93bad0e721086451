package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	cmtbytes "github.com/cometbft/cometbft/libs/bytes"
	cmtlog "github.com/cometbft/cometbft/libs/log"
)

// logged runs f against a cometLogger over a debug-level JSON handler and
// returns the records written.
func logged(t *testing.T, min slog.Level, f func(cmtlog.Logger)) []map[string]any {
	return loggedStopping(t, min, new(atomic.Bool), f)
}

func loggedStopping(t *testing.T, min slog.Level, stopping *atomic.Bool, f func(cmtlog.Logger)) []map[string]any {
	t.Helper()
	var buf bytes.Buffer
	h := slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug, AddSource: true})
	f(newCometLogger(slog.New(h), min, stopping))
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("bad log line %q: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

func TestCometLoggerLevels(t *testing.T) {
	tests := []struct {
		min  slog.Level
		log  func(cmtlog.Logger)
		want string // level, or "" for nothing logged
	}{
		{slog.LevelDebug, func(l cmtlog.Logger) { l.Debug("m") }, "DEBUG"},
		{slog.LevelDebug, func(l cmtlog.Logger) { l.Info("m") }, "INFO"},
		{slog.LevelDebug, func(l cmtlog.Logger) { l.Error("m") }, "ERROR"},
		{slog.LevelInfo, func(l cmtlog.Logger) { l.Debug("m") }, ""},
		{slog.LevelInfo, func(l cmtlog.Logger) { l.Info("m") }, "INFO"},
		{slog.LevelWarn, func(l cmtlog.Logger) { l.Info("m") }, ""},
		{slog.LevelWarn, func(l cmtlog.Logger) { l.Error("m") }, "ERROR"},
		{slog.LevelError + 1, func(l cmtlog.Logger) { l.Error("m") }, ""},
	}
	for _, tt := range tests {
		recs := logged(t, tt.min, tt.log)
		var got string
		if len(recs) == 1 {
			got, _ = recs[0]["level"].(string)
		} else if len(recs) > 1 {
			t.Fatalf("min %v: %d records", tt.min, len(recs))
		}
		if got != tt.want {
			t.Errorf("min %v: logged at %q, want %q", tt.min, got, tt.want)
		}
	}
}

func TestCometLoggerAttrs(t *testing.T) {
	recs := logged(t, slog.LevelDebug, func(l cmtlog.Logger) {
		l.With("module", "consensus").Info("Committed state",
			"height", 7,
			"hash", cmtbytes.HexBytes{0xAB, 0xCD},
			"msg", "detail text",
			"err", errors.New("boom"),
		)
	})
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1", len(recs))
	}
	r := recs[0]
	want := map[string]any{
		"msg":    "Committed state",
		"module": "consensus",
		"height": float64(7),
		"hash":   "ABCD", // HexBytes' String, not base64 bytes
		"detail": "detail text",
		"err":    "boom",
	}
	for k, v := range want {
		if r[k] != v {
			t.Errorf("%s = %#v, want %#v", k, r[k], v)
		}
	}
	// The source is CometBFT's call site (here, this test), not the adapter.
	src, _ := r["source"].(map[string]any)
	if file, _ := src["file"].(string); !strings.HasSuffix(file, "log_test.go") {
		t.Errorf("source = %v, want log_test.go", src)
	}
}

type panickyStringer struct{}

func (*panickyStringer) String() string { panic("nil") }

func TestCometLoggerSurvivesBadStringer(t *testing.T) {
	var s *panickyStringer
	recs := logged(t, slog.LevelDebug, func(l cmtlog.Logger) { l.Info("m", "v", s) })
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1", len(recs))
	}
}

// TestCometLoggerQuietsShutdown: errors CometBFT reports while the node is
// stopping (closed connections, stopped pools) are info, marked as such;
// before the stop, errors stay errors.
func TestCometLoggerQuietsShutdown(t *testing.T) {
	stopping := new(atomic.Bool)
	recs := loggedStopping(t, slog.LevelInfo, stopping, func(l cmtlog.Logger) {
		l.Error("before stop", "err", "x")
		stopping.Store(true)
		l.With("module", "p2p").Error("Stopping peer for error", "err", "use of closed network connection")
	})
	if len(recs) != 2 {
		t.Fatalf("records = %v", recs)
	}
	if recs[0]["level"] != "ERROR" || recs[0]["during_stop"] != nil {
		t.Errorf("before the stop: %v", recs[0])
	}
	if recs[1]["level"] != "INFO" || recs[1]["during_stop"] != true || recs[1]["module"] != "p2p" {
		t.Errorf("during the stop: %v", recs[1])
	}
}
