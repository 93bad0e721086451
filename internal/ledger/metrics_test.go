package ledger_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	app, err := ledger.Open(t.TempDir(), nil, ledger.NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	d := newDistrict(t, app)
	raw := d.tx(d.psb.party, d.alice.register())
	d.want([][]byte{raw, d.tx(d.hrss.party, d.bob.register())}, ledger.OK, ledger.CodeNotAuthorized)
	d.check(raw)
	d.block()

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for i, l := range m.GetLabel() {
				sep := ","
				if i == 0 {
					sep = "{"
				}
				name += sep + l.GetName() + "=" + l.GetValue()
			}
			if len(m.GetLabel()) > 0 {
				name += "}"
			}
			switch {
			case m.Counter != nil:
				got[name] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				got[name] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				got[name] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	want := map[string]float64{
		"imi_ledger_height": 2,
		"imi_ledger_transactions_total{code=0,type=" + string(tx.TypeRegisterResident) + "}": 1,
		"imi_ledger_transactions_total{code=6,type=" + string(tx.TypeRegisterResident) + "}": 1,
		"imi_ledger_checktx_rejected_total{reason=bad_sequence}":                             1,
		"imi_ledger_block_transactions":                                                      2, // observations: one per block
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (have %v)", k, got[k], v, got)
		}
	}
}
