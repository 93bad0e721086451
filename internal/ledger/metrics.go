package ledger

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the ledger's Prometheus metrics. A nil *Metrics records nothing.
type Metrics struct {
	txs      *prometheus.CounterVec
	rejected *prometheus.CounterVec
	height   prometheus.Gauge
	blockTxs prometheus.Histogram
}

// NewMetrics registers the ledger's metrics with r.
func NewMetrics(r prometheus.Registerer) *Metrics {
	m := &Metrics{
		txs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imi", Subsystem: "ledger", Name: "transactions_total",
			Help: "Transactions executed in blocks, by type and result code.",
		}, []string{"type", "code"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imi", Subsystem: "ledger", Name: "checktx_rejected_total",
			Help: "Transactions refused before entering the mempool, by reason.",
		}, []string{"reason"}),
		height: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "imi", Subsystem: "ledger", Name: "height",
			Help: "Last committed block height.",
		}),
		blockTxs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "imi", Subsystem: "ledger", Name: "block_transactions",
			Help:    "Transactions per committed block.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}),
	}
	r.MustRegister(m.txs, m.rejected, m.height, m.blockTxs)
	return m
}

func (m *Metrics) delivered(typ string, c Code) {
	if m != nil {
		m.txs.WithLabelValues(typ, strconv.Itoa(int(c))).Inc()
	}
}

func (m *Metrics) checkRejected(c Code) {
	if m != nil {
		m.rejected.WithLabelValues(c.Name()).Inc()
	}
}

func (m *Metrics) committed(height int64, n int) {
	if m != nil {
		m.height.Set(float64(height))
		m.blockTxs.Observe(float64(n))
	}
}
