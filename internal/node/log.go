package node

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync/atomic"
	"time"

	cmtlog "github.com/cometbft/cometbft/libs/log"
)

// cometLogger implements CometBFT's logger on top of slog, dropping lines
// below min before any formatting work. Once stopping is set, CometBFT's
// errors are logged at info: a clean stop closes connections and pools under
// its reactors, which report that as errors an operator need not act on.
type cometLogger struct {
	l        *slog.Logger
	min      slog.Level
	stopping *atomic.Bool
}

var _ cmtlog.Logger = cometLogger{}

func newCometLogger(l *slog.Logger, min slog.Level, stopping *atomic.Bool) cometLogger {
	return cometLogger{l: l, min: min, stopping: stopping}
}

func (c cometLogger) Debug(msg string, keyvals ...any) { c.log(slog.LevelDebug, msg, keyvals) }
func (c cometLogger) Info(msg string, keyvals ...any)  { c.log(slog.LevelInfo, msg, keyvals) }
func (c cometLogger) Error(msg string, keyvals ...any) { c.log(slog.LevelError, msg, keyvals) }

func (c cometLogger) With(keyvals ...any) cmtlog.Logger {
	return cometLogger{l: c.l.With(cometAttrs(keyvals)...), min: c.min, stopping: c.stopping}
}

func (c cometLogger) log(level slog.Level, msg string, keyvals []any) {
	ctx := context.Background()
	if level == slog.LevelError && c.stopping != nil && c.stopping.Load() {
		level = slog.LevelInfo
		keyvals = append(keyvals[:len(keyvals):len(keyvals)], "during_stop", true)
	}
	if level < c.min || !c.l.Enabled(ctx, level) {
		return
	}
	// Report CometBFT's call site, not this adapter, as the record's source:
	// skip runtime.Callers, log, and Debug/Info/Error.
	var pcs [1]uintptr
	runtime.Callers(3, pcs[:])
	r := slog.NewRecord(time.Now(), level, msg, pcs[0])
	r.Add(cometAttrs(keyvals)...)
	_ = c.l.Handler().Handle(ctx, r)
}

// cometAttrs adapts CometBFT's alternating keys and values for slog.
func cometAttrs(keyvals []any) []any {
	out := make([]any, len(keyvals))
	copy(out, keyvals)
	for i := 0; i+1 < len(out); i += 2 {
		// CometBFT passes its own "msg" attribute now and then; under that
		// key it would shadow the record's message in JSON output.
		if k, ok := out[i].(string); ok && k == slog.MessageKey {
			out[i] = "detail"
		}
		out[i+1] = cometValue(out[i+1])
	}
	return out
}

// cometValue defers fmt.Stringer values, CometBFT's hashes, IDs and lazy
// formatters, to their String method: JSON handlers would otherwise encode
// their internals (or "{}"), and disabled levels never pay for them.
func cometValue(v any) any {
	switch v := v.(type) {
	case nil, string, error, slog.LogValuer:
		return v
	case fmt.Stringer:
		return lazyString{v}
	default:
		return v
	}
}

type lazyString struct{ s fmt.Stringer }

// LogValue implements slog.LogValuer. slog recovers a panic from it, as
// from a nil pointer's String.
func (l lazyString) LogValue() slog.Value { return slog.StringValue(l.s.String()) }
