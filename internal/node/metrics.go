package node

import (
	"fmt"
	"sync"

	"github.com/cometbft/cometbft/blocksync"
	cs "github.com/cometbft/cometbft/consensus"
	mempl "github.com/cometbft/cometbft/mempool"
	cmtnode "github.com/cometbft/cometbft/node"
	"github.com/cometbft/cometbft/p2p"
	"github.com/cometbft/cometbft/proxy"
	sm "github.com/cometbft/cometbft/state"
	"github.com/cometbft/cometbft/statesync"
)

// metricsNamespace prefixes every CometBFT metric name, as in a stock
// CometBFT node, so its dashboards and alerts apply unchanged.
const metricsNamespace = "cometbft"

// cometMetrics is one set of CometBFT's metrics.
type cometMetrics struct {
	consensus *cs.Metrics
	p2p       *p2p.Metrics
	mempool   *mempl.Metrics
	state     *sm.Metrics
	proxy     *proxy.Metrics
	blocksync *blocksync.Metrics
	statesync *statesync.Metrics
}

func nopMetrics() *cometMetrics {
	return &cometMetrics{
		cs.NopMetrics(), p2p.NopMetrics(), mempl.NopMetrics(), sm.NopMetrics(),
		proxy.NopMetrics(), blocksync.NopMetrics(), statesync.NopMetrics(),
	}
}

// registered is the process's one set of Prometheus metrics. CometBFT's
// constructors register each metric in prometheus.DefaultRegisterer and
// panic if the name is taken, so the set is made once and shared by every
// later node of the same chain (a restart, or a test's second node).
var registered struct {
	sync.Mutex
	chainID string
	metrics *cometMetrics
}

// prometheusMetrics returns the process's Prometheus metrics for chainID,
// registering them on first use.
func prometheusMetrics(chainID string) (m *cometMetrics, err error) {
	registered.Lock()
	defer registered.Unlock()
	if registered.metrics != nil {
		if registered.chainID != chainID {
			return nil, fmt.Errorf("couldn't register metrics for chain %q: this process already exports metrics for chain %q", chainID, registered.chainID)
		}
		return registered.metrics, nil
	}
	defer func() {
		// A metric of the same name registered by someone else.
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("couldn't register metrics: %v", r)
		}
	}()
	labels := []string{"chain_id", chainID}
	m = &cometMetrics{
		consensus: cs.PrometheusMetrics(metricsNamespace, labels...),
		p2p:       p2p.PrometheusMetrics(metricsNamespace, labels...),
		mempool:   mempl.PrometheusMetrics(metricsNamespace, labels...),
		state:     sm.PrometheusMetrics(metricsNamespace, labels...),
		proxy:     proxy.PrometheusMetrics(metricsNamespace, labels...),
		blocksync: blocksync.PrometheusMetrics(metricsNamespace, labels...),
		statesync: statesync.PrometheusMetrics(metricsNamespace, labels...),
	}
	registered.chainID, registered.metrics = chainID, m
	return m, nil
}

// provider is the node.MetricsProvider handing out m. It stands in for
// node.DefaultMetricsProvider, which hands out real metrics only when
// Instrumentation.Prometheus is set, and that setting also makes CometBFT
// serve them on a listener of its own; IMI's HTTP server serves them
// instead.
func (m *cometMetrics) provider() cmtnode.MetricsProvider {
	return func(string) (*cs.Metrics, *p2p.Metrics, *mempl.Metrics, *sm.Metrics, *proxy.Metrics, *blocksync.Metrics, *statesync.Metrics) {
		return m.consensus, m.p2p, m.mempool, m.state, m.proxy, m.blocksync, m.statesync
	}
}
