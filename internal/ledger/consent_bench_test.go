package ledger_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/imi-city/imi/internal/consent"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/pseudonym"
	"github.com/imi-city/imi/internal/tx"
)

// Benchmarks of the consent layer at district scale.
//
// BenchmarkConsentCheck measures App.CheckAccess on a state of
// IMI_BENCH_CONSENTS consents (default 100000, so that `go test -bench .`
// stays quick), ten per resident, so a tenth as many residents, each with a
// pseudonym towards each of the two service authorities. The size is
//
//	IMI_BENCH_CONSENTS=10000000 go test -run '^$' -bench ConsentCheck -benchtime 200000x -timeout 2h ./internal/ledger
//
// (1,000,000 residents, 2,000,000 pseudonyms, 10,000,000 consents). The
// state is built with ledger.LoadConsents, which writes the records a grant
// writes with the ledger's own encoding but without signing and verifying
// ten million transactions, and is kept on disk in goleveldb as Open keeps
// a node's state. IMI_BENCH_DIR=<dir> keeps it there between runs and
// reuses it; IMI_BENCH_BOXES=1 also writes each grant's sealed subjects
// (three boxes of consent.MaxBox bytes a grant: about 2 KiB a consent).
//
// BenchmarkRecordAccess measures access records committed per second
// through FinalizeBlock and Commit, against plain iavl Set and SaveVersion
// of the same keys and values on the same machine. Both trees grow as they
// run, so compare them over the same number of blocks:
//
//	go test -run '^$' -bench RecordAccess -benchtime 20x ./internal/ledger

// benchBlockTime is the time of the blocks the benchmarks run: an hour
// after the grants, inside every consent's window.
var benchBlockTime = genesisTime.Add(time.Hour)

func envInt(tb testing.TB, name string, def int) int {
	tb.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		tb.Fatalf("%s=%q: want a positive number", name, s)
	}
	return n
}

// benchService is one of the ten services of the benchmark district.
type benchService struct {
	id, authority string
	side          int // index of the authority in propReaders
	mode          string
	claims        []tx.ClaimRef
	// bySource lists, for each authority other than the service's that
	// issues some of its claims, the claims it can release.
	bySource map[string][]tx.ClaimRef
}

// benchDistrict is the consent genesis with five more services by each of
// civil and hsb.
func benchDistrict(tb testing.TB) (*consentGenesis, []benchService) {
	tb.Helper()
	g := newConsentGenesis(tb)
	var out []benchService
	for side, a := range propReaders {
		for k := range 5 {
			var s *tx.RegisterService
			id := fmt.Sprintf("%s.bench%d", a, k)
			if a == "civil" {
				s = newService(id, []tx.ClaimRef{clFamilyName, clGivenName, clPension}, []tx.ClaimRef{clAddress}, []string{tx.ModeOneTime, tx.ModeStanding}, 365)
			} else {
				s = newService(id, []tx.ClaimRef{clMedicalNo, clGivenName}, []tx.ClaimRef{clContribution}, []string{tx.ModeOneTime, tx.ModeStanding}, 730)
			}
			g.genesis.Services = append(g.genesis.Services, ledger.GenesisService{Authority: a, Service: *s})
			bs := benchService{id: id, authority: a, side: side, mode: tx.ModeStanding, bySource: map[string][]tx.ClaimRef{}}
			if a == "civil" && k == 4 {
				bs.mode = tx.ModeOneTime // a tenth of the consents
			}
			bs.claims = slices.SortedFunc(slices.Values(append(slices.Clone(s.Required), s.Optional...)), tx.ClaimRef.Compare)
			for _, c := range bs.claims {
				if i := g.claims[c].issuer; i != a {
					bs.bySource[i] = append(bs.bySource[i], c)
				}
			}
			out = append(out, bs)
		}
	}
	return g, out
}

// benchConsent is the consent a resident's pseudonym p gave to s.
func benchConsent(g *consentGenesis, s benchService, p string) ledger.ConsentLoad {
	body := grantBody(g.claims, s.id, 1, s.authority, s.mode, 0, s.claims)
	until := genesisTime.Add(ledger.OneTimeWindow)
	if s.mode == tx.ModeStanding {
		until = genesisTime.Add(365 * 24 * time.Hour)
	}
	h := sha256.Sum256([]byte(p + "/" + s.id))
	var sources []string
	for _, sub := range body.Subjects {
		sources = append(sources, sub.Authority)
	}
	return ledger.ConsentLoad{Consent: ledger.Consent{
		ID: hex.EncodeToString(h[:16]), Subject: p, Service: s.id, ServiceVersion: 1, Authority: s.authority,
		Claims: body.Claims, Sensitive: body.Sensitive, Sources: sources, Mode: s.mode,
		Granted: ledger.Stamp{Height: 1, Time: genesisTime}, Until: until, Status: ledger.ConsentActive,
	}}
}

// benchPseudonyms derives residents' pseudonyms towards civil and hsb, on
// every CPU: a derivation is an Ed25519 key generation.
func benchPseudonyms(tb testing.TB, residents int) [][2]string {
	tb.Helper()
	out := make([][2]string, residents)
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < residents; i += workers {
				secret := sha256.Sum256(binary.BigEndian.AppendUint64([]byte("imi bench resident "), uint64(i)))
				for side, a := range propReaders {
					k, err := pseudonym.Derive(secret[:], a)
					if err != nil {
						panic(err)
					}
					out[i][side] = pseudonym.FromKey(k.Public()).String()
				}
			}
		}()
	}
	wg.Wait()
	return out
}

// consentState is a built state: the open App and each resident's
// pseudonyms.
type consentState struct {
	app      *ledger.App
	g        *consentGenesis
	services []benchService
	psns     [][2]string
	n        int // consents
	dir      string
}

// openConsentState builds (or, under IMI_BENCH_DIR, reuses) a state of n
// consents: resident i consents to service j for every i*10+j < n.
func openConsentState(b *testing.B, n int, boxes bool) *consentState {
	b.Helper()
	g, services := benchDistrict(b)
	residents := (n + len(services) - 1) / len(services)
	dir := filepath.Join(b.TempDir(), "state")
	keep := os.Getenv("IMI_BENCH_DIR")
	if keep != "" {
		dir = filepath.Join(keep, fmt.Sprintf("consents-%d-boxes-%v", n, boxes))
	}
	st := &consentState{g: g, services: services, n: n, dir: dir}
	done := filepath.Join(dir, "complete")
	if _, err := os.Stat(done); err == nil {
		app, err := ledger.Open(dir, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		st.app, st.psns = app, readPseudonyms(b, filepath.Join(dir, "pseudonyms"), residents)
		b.Logf("reusing the state of %d consents in %s", n, dir)
	} else {
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		st.build(b, residents, boxes)
		writePseudonyms(b, filepath.Join(dir, "pseudonyms"), st.psns)
		if err := os.WriteFile(done, nil, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() { st.app.Close() })
	// CheckAccess judges by the last block's time, which a node knows only
	// once it has committed a block since it started.
	benchBlock(b, st.app, benchBlockTime.Add(time.Duration(st.app.Height())*time.Second))
	return st
}

func (st *consentState) build(b *testing.B, residents int, boxes bool) {
	start := time.Now()
	st.psns = benchPseudonyms(b, residents)
	derived := time.Since(start)

	app, err := ledger.Open(st.dir, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	st.app = app
	newChain(b, app, st.g.genesis)

	// Load in key order (pseudonym, then service), as iavl and goleveldb
	// take a sorted bulk load best; the tree is balanced either way.
	type entry struct {
		psn      string
		resident int
		side     int
	}
	entries := make([]entry, 0, 2*residents)
	for i, ps := range st.psns {
		for side, p := range ps {
			entries = append(entries, entry{p, i, side})
		}
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.psn, b.psn) })
	bySide := [2][]int{}
	for j, s := range st.services {
		bySide[s.side] = append(bySide[s.side], j)
	}
	for side := range bySide {
		slices.SortFunc(bySide[side], func(a, b int) int { return strings.Compare(st.services[a].id, st.services[b].id) })
	}
	var box []byte
	if boxes {
		box = make([]byte, consent.MaxBox)
		// Ciphertext: incompressible, as goleveldb would see real boxes.
		rand.NewChaCha8([32]byte{'b', 'o', 'x'}).Read(box)
	}

	const chunk = 100_000
	loads := make([]ledger.ConsentLoad, 0, chunk)
	seqs := map[string]uint64{}
	loaded := 0
	flush := func() {
		app.LoadConsents(b, loads, seqs)
		loaded += len(loads)
		loads, seqs = loads[:0], map[string]uint64{}
		if loaded%1_000_000 < chunk {
			b.Logf("loaded %d consents in %s", loaded, time.Since(start).Round(time.Second))
		}
	}
	for _, e := range entries {
		for _, j := range bySide[e.side] {
			if e.resident*len(st.services)+j >= st.n {
				continue
			}
			l := benchConsent(st.g, st.services[j], e.psn)
			if boxes {
				for _, src := range l.Consent.Sources {
					l.Boxes = append(l.Boxes, tx.SealedSubject{Authority: src, Box: box})
				}
			}
			loads = append(loads, l)
			seqs[e.psn]++
			if len(loads) == chunk {
				flush()
			}
		}
	}
	if len(loads) > 0 {
		flush()
	}
	b.Logf("built %d consents of %d residents (%d pseudonyms) in %s (pseudonyms %s); state %s on disk",
		loaded, residents, 2*residents, time.Since(start).Round(time.Second), derived.Round(time.Second), mib(dirSize(b, st.dir)))
}

func writePseudonyms(tb testing.TB, path string, psns [][2]string) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for _, p := range psns {
		fmt.Fprintf(w, "%s %s\n", p[0], p[1])
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

func readPseudonyms(tb testing.TB, path string, residents int) [][2]string {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	out := make([][2]string, 0, residents)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		a, b, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			tb.Fatalf("%s: bad line %q", path, sc.Text())
		}
		out = append(out, [2]string{a, b})
	}
	if err := sc.Err(); err != nil || len(out) != residents {
		tb.Fatalf("%s: %d residents, %v; want %d", path, len(out), err, residents)
	}
	return out
}

func dirSize(tb testing.TB, dir string) int64 {
	tb.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

// benchBlock executes and commits a block on app at the next height.
func benchBlock(tb testing.TB, app *ledger.App, at time.Time, txs ...[]byte) *abci.ResponseFinalizeBlock {
	tb.Helper()
	res, err := app.FinalizeBlock(context.Background(), &abci.RequestFinalizeBlock{Height: app.Height() + 1, Time: at, Txs: txs})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := app.Commit(context.Background(), &abci.RequestCommit{}); err != nil {
		tb.Fatal(err)
	}
	return res
}

// requests makes n access requests against the state's consents, chosen
// at random: half presentations of some of the consented claims, half
// back-office reads from an issuer of some of them. want is the reason each
// should be denied for ("" to allow): a back-office read under a one-time
// consent is not allowed.
func (st *consentState) requests(n int, seed uint64) (reqs []tx.AccessRecord, want []string) {
	rng := rand.New(rand.NewPCG(seed, 1))
	for range n {
		k := rng.IntN(st.n)
		s := st.services[k%len(st.services)]
		r := tx.AccessRecord{
			Subject: st.psns[k/len(st.services)][s.side], Reader: s.authority, Service: s.id,
			Channel: tx.ChannelPresentation, Outcome: tx.OutcomeAllowed,
		}
		var from []tx.ClaimRef
		why := ""
		if rng.IntN(2) == 0 {
			from = s.claims
		} else {
			srcs := slices.Sorted(func(yield func(string) bool) {
				for a := range s.bySource {
					if !yield(a) {
						return
					}
				}
			})
			r.Channel, r.Source = tx.ChannelBackOffice, srcs[rng.IntN(len(srcs))]
			from = s.bySource[r.Source]
			if s.mode != tx.ModeStanding {
				why = ledger.DenyNotStanding
			}
		}
		for _, c := range from {
			if rng.IntN(2) == 0 {
				r.Claims = append(r.Claims, c)
			}
		}
		if len(r.Claims) == 0 {
			r.Claims = from[:1]
		}
		reqs, want = append(reqs, r), append(want, why)
	}
	return reqs, want
}

func BenchmarkConsentCheck(b *testing.B) {
	n := envInt(b, "IMI_BENCH_CONSENTS", 100_000)
	st := openConsentState(b, n, os.Getenv("IMI_BENCH_BOXES") == "1")

	const nreq = 1 << 16
	reqs, want := st.requests(nreq, 7)
	// The answers are right before they are timed.
	for i := range 2000 {
		dec, err := st.app.CheckAccess(&reqs[i])
		if err != nil {
			b.Fatal(err)
		}
		if dec.Reason != want[i] {
			b.Fatalf("request %d (%+v): reason %q, want %q", i, reqs[i], dec.Reason, want[i])
		}
	}

	lat := make([]time.Duration, 0, 1<<20)
	i := 0
	for b.Loop() {
		r := &reqs[i%nreq]
		i++
		t0 := time.Now()
		_, err := st.app.CheckAccess(r)
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
	}
	slices.Sort(lat)
	// Reported after the loop: b.Loop's start drops earlier metrics.
	b.ReportMetric(float64(n), "consents")
	b.ReportMetric(float64(dirSize(b, st.dir))/(1<<20), "state-MiB")
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// BenchmarkRecordAccess commits blocks of recordTxs record_access
// transactions of MaxAccessBatch presentation records each, judged against
// standing consents of recordResidents residents. baseline-iavl writes the
// same keys and values with iavl's Set and SaveVersion alone: the ledger's
// rate over the baseline's is the cost of decoding, signature checks,
// judging, indexing and the results database.
func BenchmarkRecordAccess(b *testing.B) {
	const (
		recordTxs       = 16
		recordResidents = 20_000
	)
	perBlock := recordTxs * ledger.MaxAccessBatch
	g, services := benchDistrict(b)
	svc := services[0] // civil.bench0, standing
	psns := benchPseudonyms(b, recordResidents)
	// records makes one block's access records, with fresh ids.
	var ids uint64
	rng := rand.New(rand.NewPCG(11, 12))
	records := func() []tx.AccessRecord {
		out := make([]tx.AccessRecord, perBlock)
		for i := range out {
			ids++
			id := make([]byte, 16)
			binary.BigEndian.PutUint64(id[8:], ids)
			var claims []tx.ClaimRef
			for _, c := range svc.claims {
				if rng.IntN(2) == 0 {
					claims = append(claims, c)
				}
			}
			if len(claims) == 0 {
				claims = svc.claims[:1]
			}
			out[i] = tx.AccessRecord{ID: id, Subject: psns[rng.IntN(len(psns))][svc.side], Reader: svc.authority, Service: svc.id,
				Claims: claims, Channel: tx.ChannelPresentation, Outcome: tx.OutcomeAllowed}
		}
		return out
	}
	loads := make([]ledger.ConsentLoad, len(psns))
	for i, p := range psns {
		loads[i] = benchConsent(g, svc, p[svc.side])
	}
	var rates [2]float64

	b.Run("ledger", func(b *testing.B) {
		app, err := ledger.Open(b.TempDir(), nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer app.Close()
		newChain(b, app, g.genesis)
		app.LoadConsents(b, loads, nil)
		at := benchBlockTime
		benchBlock(b, app, at)
		civil := g.civil
		seq := app.NextSeq(civil.did, 0)
		n := 0
		for b.Loop() {
			b.StopTimer()
			recs := records()
			txs := make([][]byte, recordTxs)
			for i := range txs {
				txs[i] = build(b, testChainID, civil.did, 0, seq, &tx.RecordAccess{Records: recs[i*ledger.MaxAccessBatch : (i+1)*ledger.MaxAccessBatch]}, civil.key)
				seq++
			}
			at = at.Add(blockInterval)
			b.StartTimer()
			res := benchBlock(b, app, at, txs...)
			b.StopTimer()
			for i, r := range res.TxResults {
				if r.Code != 0 {
					b.Fatalf("tx %d: %s", i, r.Log)
				}
			}
			if a, _, err := app.AccessRecord(recs[0].Subject, recs[0].ID, 0); err != nil || a.Outcome != tx.OutcomeAllowed {
				b.Fatalf("first record stored as %+v, %v", a, err)
			}
			n += perBlock
			b.StartTimer()
		}
		rates[0] = float64(n) / b.Elapsed().Seconds()
		b.ReportMetric(rates[0], "records/s")
	})

	b.Run("baseline-iavl", func(b *testing.B) {
		tree := ledger.OpenBaselineTree(b, b.TempDir())
		// The same consents to start from, so that both trees grow from
		// the same size.
		for _, l := range loads {
			v, err := tx.Marshal(&l.Consent)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := tree.Set([]byte("cons/"+l.Consent.Subject+"/"+l.Consent.Service), v); err != nil {
				b.Fatal(err)
			}
		}
		if _, _, err := tree.SaveVersion(); err != nil {
			b.Fatal(err)
		}
		// The same keys and values the ledger writes for a record: the
		// record under its subject, and the reader's index entry.
		at := ledger.Stamp{Height: 1, Time: benchBlockTime}
		n := 0
		for b.Loop() {
			b.StopTimer()
			recs := records()
			keys, vals := make([][]byte, 0, 2*len(recs)), make([][]byte, 0, 2*len(recs))
			at.Height++
			for _, r := range recs {
				id := base64.RawURLEncoding.EncodeToString(r.ID)
				v, err := tx.Marshal(&ledger.Access{AccessRecord: r, Consent: strings.Repeat("0", 32), Recorder: r.Reader, At: at})
				if err != nil {
					b.Fatal(err)
				}
				keys = append(keys, []byte("acc/"+r.Subject+"/"+id), fmt.Appendf(nil, "acca/%s/%016x/%s/%s", r.Reader, at.Height, r.Subject, id))
				vals = append(vals, v, []byte{1})
			}
			b.StartTimer()
			for i, k := range keys {
				if _, err := tree.Set(k, vals[i]); err != nil {
					b.Fatal(err)
				}
			}
			if _, _, err := tree.SaveVersion(); err != nil {
				b.Fatal(err)
			}
			n += perBlock
		}
		rates[1] = float64(n) / b.Elapsed().Seconds()
		b.ReportMetric(rates[1], "records/s")
	})
	if rates[0] > 0 && rates[1] > 0 {
		b.Logf("ledger %.0f records/s, plain iavl %.0f records/s: the ledger runs at %.0f%% of iavl's write rate",
			rates[0], rates[1], 100*rates[0]/rates[1])
	}
}
