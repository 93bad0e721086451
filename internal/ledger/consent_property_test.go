package ledger_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

// TestConsentProperty runs random sequences of grants, revocations, service
// changes, passing time and access requests against a node, and after every
// block compares what the node decided with a small reference model of the
// consent rules written here, apart from the ledger's code.
//
// Sequences are drawn from a fixed seed, so every run checks the same ones.
// IMI_CONSENT_SEED=<n> replays one sequence (a failure prints its seed and
// steps); IMI_CONSENT_RUNS=<n> changes how many are run.
func TestConsentProperty(t *testing.T) {
	runs, steps := 300, 40
	if testing.Short() || raceEnabled() {
		// The race detector slows the ledger tenfold; the sequences
		// run on one goroutine but for signature checks.
		runs = 40
	}
	if s := os.Getenv("IMI_CONSENT_RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("IMI_CONSENT_RUNS: %v", err)
		}
		runs = n
	}
	master := rand.New(rand.NewPCG(20300101, 0x1c0))
	seeds := make([]uint64, runs)
	for i := range seeds {
		seeds[i] = master.Uint64()
	}
	if s := os.Getenv("IMI_CONSENT_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("IMI_CONSENT_SEED: %v", err)
		}
		seeds = []uint64{n}
	}
	w := newPropWorld(t)
	for _, seed := range seeds {
		var log []string
		func() {
			// The harness fails the test itself on an ABCI error; say
			// which sequence it was in.
			reported := false
			defer func() {
				if t.Failed() && !reported {
					t.Logf("seed %d, steps:\n%s", seed, strings.Join(log, "\n"))
				}
			}()
			if err := w.run(t, seed, steps, &log); err != nil {
				reported = true
				t.Fatalf("seed %d: %v\nsteps:\n%s\nreplay: IMI_CONSENT_SEED=%d go test -run TestConsentProperty ./internal/ledger",
					seed, err, strings.Join(log, "\n"), seed)
			}
		}()
	}
	// The sequences must have reached every outcome, or the comparison
	// proves less than it seems to.
	if len(seeds) < 40 {
		return
	}
	for _, k := range []string{
		"grant ok", "grant invalid_field", "revoke ok", "revoke no_active_consent",
		"allowed", ledger.DenyNoConsent, ledger.DenyRevoked, ledger.DenyUsed, ledger.DenyExpired, ledger.DenyServiceChanged,
		ledger.DenyWrongReader, ledger.DenyClaimNotAllowed, ledger.DenyNotStanding, ledger.DenySourceNotParty,
		"duplicate", "judged at the window's last second", "judged at the window's end",
	} {
		if w.seen[k] == 0 {
			t.Errorf("no sequence reached %q; seen: %v", k, w.seen)
		}
	}
	t.Logf("outcomes reached: %v", w.seen)
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// propWorld is what every sequence shares: the genesis, three residents'
// pseudonyms towards the two service authorities, the two services and the
// variants they may be re-registered in.
type propWorld struct {
	g        *consentGenesis
	auths    map[string]*authority
	psns     [][]psn // resident -> [civil, hsb]
	names    map[string]string
	services []string
	// variants are the optional claims a service may be republished with.
	variants map[string][][]tx.ClaimRef
	pool     []tx.ClaimRef // every published claim
	reasons  []string
	// seen counts the outcomes the model predicted, over all sequences.
	seen map[string]int
}

var propReaders = []string{"civil", "hsb"}

func newPropWorld(t *testing.T) *propWorld {
	g := newConsentGenesis(t)
	w := &propWorld{
		g:        g,
		auths:    map[string]*authority{"psb": g.psb, "hrss": g.hrss, "hsb": g.hsb, "utility": g.utility, "civil": g.civil},
		names:    map[string]string{},
		seen:     map[string]int{},
		services: []string{svcAllowance, svcReimburse},
		variants: map[string][][]tx.ClaimRef{
			svcAllowance: {allowanceService().Optional, {clAddress}},
			svcReimburse: {reimburseService().Optional, {clAgeOver60}, nil},
		},
		reasons: []string{ledger.DenyBadRequest, ledger.DenyClaimNotAllowed, ledger.DenyExpired, ledger.DenyNoConsent, ledger.DenyNotGuardian,
			ledger.DenyNotStanding, ledger.DenyRevoked, ledger.DenyServiceChanged, ledger.DenySourceNotParty, ledger.DenySubjectUnknown,
			ledger.DenyUsed, ledger.DenyWrongReader},
	}
	for i := range 3 {
		wl := newWallet(fmt.Sprintf("resident %d", i))
		var ps []psn
		for _, a := range propReaders {
			p := wl.towards(t, a)
			ps = append(ps, p)
			w.names[p.id] = fmt.Sprintf("r%d@%s", i, a)
		}
		w.psns = append(w.psns, ps)
	}
	for c := range g.claims {
		w.pool = append(w.pool, c)
	}
	slices.SortFunc(w.pool, tx.ClaimRef.Compare)
	return w
}

// The reference model. It knows the rules as the issue states them, not
// the ledger's code.

type mService struct {
	authority string
	version   uint64
	def       *tx.RegisterService
}

type mConsent struct {
	status  string
	mode    string
	until   time.Time
	version uint64
	claims  []tx.ClaimRef
	reader  string
	sources []string
}

type mRecord struct{ outcome, reason string }

type model struct {
	services map[string]*mService
	consents map[[2]string]*mConsent // (pseudonym, service)
	records  map[string]mRecord      // pseudonym/id
	issuer   map[string]string       // credential type -> issuer
	info     map[tx.ClaimRef]claimInfo
}

func newModel(g *consentGenesis) *model {
	m := &model{services: map[string]*mService{}, consents: map[[2]string]*mConsent{}, records: map[string]mRecord{},
		issuer: map[string]string{}, info: g.claims}
	for _, s := range g.genesis.Services {
		def := s.Service
		m.services[def.ID] = &mService{authority: s.Authority, version: 1, def: &def}
	}
	for c, ci := range g.claims {
		m.issuer[c.Type] = ci.issuer
	}
	return m
}

// grant applies a grant at block time at and returns the code it should get.
func (m *model) grant(subject string, g *tx.GrantConsent, at time.Time) ledger.Code {
	s := m.services[g.Service]
	asked := append(slices.Clone(s.def.Required), s.def.Optional...)
	valid := g.ServiceVersion == s.version && slices.Contains(s.def.Modes, g.Mode)
	for _, c := range s.def.Required {
		valid = valid && slices.Contains(g.Claims, c)
	}
	for _, c := range g.Claims {
		valid = valid && slices.Contains(asked, c)
	}
	until := at.Add(24 * time.Hour)
	switch g.Mode {
	case tx.ModeOneTime:
		valid = valid && g.Days == 0
	case tx.ModeStanding:
		valid = valid && g.Days >= 1 && g.Days <= s.def.MaxStandingDays
		until = at.Add(time.Duration(g.Days) * 24 * time.Hour)
	}
	if !valid {
		return ledger.CodeInvalidField
	}
	sources := []string{s.authority}
	for _, c := range g.Claims {
		if i := m.issuer[c.Type]; !slices.Contains(sources, i) {
			sources = append(sources, i)
		}
	}
	slices.Sort(sources)
	m.consents[[2]string{subject, g.Service}] = &mConsent{
		status: ledger.ConsentActive, mode: g.Mode, until: until, version: s.version,
		claims: slices.Clone(g.Claims), reader: s.authority, sources: sources,
	}
	return ledger.OK
}

func (m *model) revoke(subject, service string, at time.Time) ledger.Code {
	c := m.consents[[2]string{subject, service}]
	if c == nil || c.status != ledger.ConsentActive || !at.Before(c.until) {
		return ledger.CodeNoConsent
	}
	c.status = ledger.ConsentRevoked
	return ledger.OK
}

// decide is the rule: "" allows, else the reason for denying.
func (m *model) decide(r *tx.AccessRecord, at time.Time) string {
	c := m.consents[[2]string{r.Subject, r.Service}]
	switch {
	case c == nil:
		return ledger.DenyNoConsent
	case c.status == ledger.ConsentRevoked:
		return ledger.DenyRevoked
	case c.status == ledger.ConsentUsed:
		return ledger.DenyUsed
	case !at.Before(c.until):
		return ledger.DenyExpired
	case c.version != m.services[r.Service].version:
		return ledger.DenyServiceChanged
	case r.Reader != c.reader:
		return ledger.DenyWrongReader
	}
	for _, cl := range r.Claims {
		if !slices.Contains(c.claims, cl) {
			return ledger.DenyClaimNotAllowed
		}
	}
	if r.Channel == tx.ChannelBackOffice {
		if c.mode != tx.ModeStanding {
			return ledger.DenyNotStanding
		}
		if !slices.Contains(c.sources, r.Source) {
			return ledger.DenySourceNotParty
		}
		for _, cl := range r.Claims {
			if m.issuer[cl.Type] != r.Source {
				return ledger.DenySourceNotParty
			}
		}
	}
	return ""
}

// record stores r as the ledger should at block time at.
func (m *model) record(r *tx.AccessRecord, at time.Time) {
	k := r.Subject + "/" + fmt.Sprintf("%x", r.ID)
	if _, dup := m.records[k]; dup {
		return
	}
	if r.Outcome == tx.OutcomeDenied {
		m.records[k] = mRecord{r.Outcome, r.Reason}
		return
	}
	why := m.decide(r, at)
	if why != "" {
		m.records[k] = mRecord{tx.OutcomeDenied, why}
		return
	}
	m.records[k] = mRecord{tx.OutcomeAllowed, ""}
	if c := m.consents[[2]string{r.Subject, r.Service}]; c.mode == tx.ModeOneTime {
		c.status = ledger.ConsentUsed
	}
}

// seq is one random sequence on a fresh node.
type seq struct {
	w    *propWorld
	c    *chain
	m    *model
	rng  *rand.Rand
	n    int // residents in play
	ids  uint64
	sent []tx.AccessRecord // every record submitted, for duplicates
}

func (w *propWorld) run(t *testing.T, seed uint64, steps int, log *[]string) error {
	app, err := ledger.OpenMemory(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	s := &seq{w: w, c: newChain(t, app, w.g.genesis), m: newModel(w.g), rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	s.n = 2 + s.rng.IntN(2)
	s.c.block()
	for step := range steps {
		at := s.nextTime()
		var (
			txs     [][]byte
			want    []ledger.Code
			desc    []string
			records []tx.AccessRecord
			signed  = map[string]bool{}
		)
		for range 1 + s.rng.IntN(3) {
			raw, code, d, recs := s.op(at, signed)
			txs, want, desc = append(txs, raw), append(want, code), append(desc, d)
			records = append(records, recs...)
		}
		*log = append(*log, fmt.Sprintf("%2d %s (+%s): %s", step, at.Format(time.RFC3339), at.Sub(s.c.now).Round(time.Second), strings.Join(desc, "; ")))
		res := s.c.blockAt(at, txs...)
		for i, r := range res.TxResults {
			if got := ledger.Code(r.Code); got != want[i] {
				return fmt.Errorf("step %d tx %d: code %s (%s), model says %s", step, i, got.Name(), r.Log, want[i].Name())
			}
		}
		for _, r := range records {
			a, _, err := app.AccessRecord(r.Subject, r.ID, 0)
			if err != nil {
				return fmt.Errorf("step %d: record %s of %s: %v", step, recordName(r.ID), s.name(r.Subject), err)
			}
			want := s.m.records[r.Subject+"/"+fmt.Sprintf("%x", r.ID)]
			if a.Outcome != want.outcome || a.Reason != want.reason {
				return fmt.Errorf("step %d: record %s of %s stored %s/%q, model says %s/%q",
					step, recordName(r.ID), s.name(r.Subject), a.Outcome, a.Reason, want.outcome, want.reason)
			}
		}
		for range 4 {
			r := s.request()
			dec, err := app.CheckAccess(&r)
			if err != nil {
				return fmt.Errorf("step %d: CheckAccess: %v", step, err)
			}
			s.see(&r, at)
			if why := s.m.decide(&r, at); dec.Allowed != (why == "") || dec.Reason != why {
				return fmt.Errorf("step %d: CheckAccess(%s) = allowed %v %q, model says %q", step, s.describe(&r), dec.Allowed, dec.Reason, why)
			}
		}
		if err := s.compareConsents(app); err != nil {
			return fmt.Errorf("step %d: %v", step, err)
		}
	}
	return nil
}

// nextTime picks the next block's time: mostly soon, sometimes days later,
// sometimes exactly at or just before the end of some consent's window.
func (s *seq) nextTime() time.Time {
	now := s.c.now
	switch r := s.rng.IntN(100); {
	case r < 70:
		return now.Add(time.Second + time.Duration(s.rng.Int64N(int64(2*time.Hour))))
	case r < 85:
		return now.Add(time.Duration(1+s.rng.IntN(4)) * 24 * time.Hour)
	case r < 95:
		var ends []time.Time
		for _, k := range s.consentKeys() {
			if c := s.m.consents[k]; c.status == ledger.ConsentActive {
				ends = append(ends, c.until.Add(-time.Second), c.until)
			}
		}
		if len(ends) > 0 {
			if e := ends[s.rng.IntN(len(ends))]; e.After(now) {
				return e
			}
		}
		return now.Add(blockInterval)
	default:
		return now.Add(40 * 24 * time.Hour)
	}
}

// consentKeys lists the model's consents in a fixed order, so that a seed
// always makes the same choices.
func (s *seq) consentKeys() [][2]string {
	var ks [][2]string
	for k := range s.m.consents {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, func(a, b [2]string) int {
		if c := strings.Compare(a[0], b[0]); c != 0 {
			return c
		}
		return strings.Compare(a[1], b[1])
	})
	return ks
}

func (s *seq) name(p string) string {
	if n, ok := s.w.names[p]; ok {
		return n
	}
	return p
}

// subject picks a pseudonym for service: usually a resident's pseudonym
// towards the service's authority, sometimes the one towards the other.
func (s *seq) subject(service string) psn {
	r := s.w.psns[s.rng.IntN(s.n)]
	i := slices.Index(propReaders, s.m.services[service].authority)
	if s.rng.IntN(10) == 0 {
		i = 1 - i
	}
	return r[i]
}

func (s *seq) pick(xs []string) string { return xs[s.rng.IntN(len(xs))] }

// op makes one transaction of the block at time at, applies it to the
// model, and returns it with the code the model expects. A pseudonym signs
// at most once a block, so that a refusal cannot shift a later sequence
// number.
func (s *seq) op(at time.Time, signed map[string]bool) ([]byte, ledger.Code, string, []tx.AccessRecord) {
	r := s.rng.IntN(100)
	if r < 45 {
		svc := s.pick(s.w.services)
		p := s.subject(svc)
		if !signed[p.id] {
			signed[p.id] = true
			if r < 30 {
				g := s.grant(svc)
				code := s.m.grant(p.id, g, at)
				s.w.seen["grant "+code.Name()]++
				d := fmt.Sprintf("grant %s %s v%d %s %dd %v -> %s", s.name(p.id), svc, g.ServiceVersion, g.Mode, g.Days, g.Claims, code.Name())
				return s.c.txAs(p.id, p.key, g), code, d, nil
			}
			code := s.m.revoke(p.id, svc, at)
			s.w.seen["revoke "+code.Name()]++
			d := fmt.Sprintf("revoke %s %s -> %s", s.name(p.id), svc, code.Name())
			return s.c.txAs(p.id, p.key, &tx.RevokeConsent{Service: svc}), code, d, nil
		}
	}
	if r >= 45 && r < 52 {
		svc := s.pick(s.w.services)
		ms := s.m.services[svc]
		def := *ms.def
		def.Optional = slices.Clone(s.w.variants[svc][s.rng.IntN(len(s.w.variants[svc]))])
		def.Form = formFor(append(slices.Clone(def.Required), def.Optional...)...)
		def.PurposeEN = fmt.Sprintf("To deliver %s (revision %d)", svc, ms.version+1)
		ms.version++
		ms.def = &def
		d := fmt.Sprintf("republish %s as v%d optional %v", svc, ms.version, def.Optional)
		return s.c.tx(s.w.auths[ms.authority].party, &def), ledger.OK, d, nil
	}
	// An access, recorded by the reader (presentation) or the source
	// (back office): the recorder is an authority, which may sign many
	// transactions in a block.
	recs := make([]tx.AccessRecord, 1+s.rng.IntN(3))
	var by string
	var d []string
	for i := range recs {
		rec := s.request()
		switch {
		case i > 0 && s.rng.IntN(2) == 0:
			// The same request for another subject (or the same one).
			rec = recs[0]
			rec.ID, rec.Subject = s.nextID(), s.subject(rec.Service).id
		case i > 0:
			// Another request from the same recorder.
			rec.Reader, rec.Channel, rec.Source = recs[0].Reader, recs[0].Channel, recs[0].Source
		}
		if s.rng.IntN(10) == 0 && len(s.sent) > 0 {
			// The same request again (its id), perhaps with other details.
			prev := s.sent[s.rng.IntN(len(s.sent))]
			if prev.Reader == rec.Reader && prev.Source == rec.Source && prev.Channel == rec.Channel {
				rec.ID, rec.Subject = prev.ID, prev.Subject
			}
		}
		if s.rng.IntN(10) == 0 {
			rec.Outcome, rec.Reason = tx.OutcomeDenied, s.pick(s.w.reasons)
		}
		recs[i] = rec
		s.see(&rec, at)
		s.m.record(&recs[i], at)
		s.sent = append(s.sent, rec)
		k := rec.Subject + "/" + fmt.Sprintf("%x", rec.ID)
		d = append(d, fmt.Sprintf("%s -> %s/%s", s.describe(&rec), s.m.records[k].outcome, s.m.records[k].reason))
	}
	by = recs[0].Reader
	if recs[0].Channel == tx.ChannelBackOffice {
		by = recs[0].Source
	}
	raw := s.c.tx(s.w.auths[by].party, &tx.RecordAccess{Records: recs})
	return raw, ledger.OK, "record by " + by + " [" + strings.Join(d, ", ") + "]", recs
}

// grant makes a grant that is mostly valid: now and then it is for an old
// version, leaves out a required claim, adds one not asked for, or has a
// duration the service does not allow.
func (s *seq) grant(svc string) *tx.GrantConsent {
	ms := s.m.services[svc]
	claims := slices.Clone(ms.def.Required)
	for _, c := range ms.def.Optional {
		if s.rng.IntN(2) == 0 {
			claims = append(claims, c)
		}
	}
	if s.rng.IntN(20) == 0 {
		claims = slices.Delete(claims, 0, 1)
	}
	if s.rng.IntN(20) == 0 {
		if c := s.w.pool[s.rng.IntN(len(s.w.pool))]; !slices.Contains(claims, c) {
			claims = append(claims, c)
		}
	}
	version := ms.version
	if s.rng.IntN(10) == 0 {
		version = uint64(s.rng.IntN(int(ms.version) + 2))
	}
	mode := s.pick(ms.def.Modes)
	var days uint32
	switch mode {
	case tx.ModeOneTime:
		if s.rng.IntN(20) == 0 {
			days = 1
		}
	case tx.ModeStanding:
		max := ms.def.MaxStandingDays
		switch r := s.rng.IntN(20); {
		case r == 0:
			days = 0
		case r == 1:
			days = max + 1
		case r < 10:
			days = []uint32{1, 1, 2, 3, 7}[s.rng.IntN(5)]
		default:
			days = 1 + uint32(s.rng.IntN(int(max)))
		}
	}
	return grantBody(s.m.info, svc, version, ms.authority, mode, days, claims)
}

// request is a well-formed "allowed" access record of a random kind: any
// reader, channel and source, claims mostly within the subject's consent
// and sometimes outside it.
func (s *seq) request() tx.AccessRecord {
	svc := s.pick(s.w.services)
	ms := s.m.services[svc]
	p := s.subject(svc)
	reader := ms.authority
	if s.rng.IntN(5) == 0 {
		reader = s.pick(propReaders)
	}
	var claims []tx.ClaimRef
	if c := s.m.consents[[2]string{p.id, svc}]; c != nil && s.rng.IntN(3) > 0 {
		for _, cl := range c.claims {
			if s.rng.IntN(2) == 0 {
				claims = append(claims, cl)
			}
		}
	}
	for len(claims) == 0 || s.rng.IntN(6) == 0 {
		asked := append(slices.Clone(ms.def.Required), ms.def.Optional...)
		if s.rng.IntN(4) == 0 {
			asked = s.w.pool
		}
		if c := asked[s.rng.IntN(len(asked))]; !slices.Contains(claims, c) {
			claims = append(claims, c)
		}
	}
	slices.SortFunc(claims, tx.ClaimRef.Compare)
	r := tx.AccessRecord{ID: s.nextID(), Subject: p.id, Reader: reader, Service: svc, Claims: claims,
		Channel: tx.ChannelPresentation, Outcome: tx.OutcomeAllowed}
	if s.rng.IntN(2) == 0 {
		r.Channel = tx.ChannelBackOffice
		if s.rng.IntN(3) > 0 {
			// The issuer of one claim, releasing mostly its own claims.
			r.Source = s.m.issuer[claims[s.rng.IntN(len(claims))].Type]
			if s.rng.IntN(4) > 0 {
				r.Claims = slices.DeleteFunc(slices.Clone(claims), func(c tx.ClaimRef) bool { return s.m.issuer[c.Type] != r.Source })
			}
		}
		for r.Source == "" || r.Source == r.Reader {
			r.Source = s.pick([]string{"civil", "hrss", "hsb", "psb", "utility"})
		}
	}
	return r
}

// see counts what the model decides for r at time at.
func (s *seq) see(r *tx.AccessRecord, at time.Time) {
	if _, dup := s.m.records[r.Subject+"/"+fmt.Sprintf("%x", r.ID)]; dup {
		s.w.seen["duplicate"]++
		return
	}
	why := s.m.decide(r, at)
	if why == "" {
		why = "allowed"
	}
	s.w.seen[why]++
	if c := s.m.consents[[2]string{r.Subject, r.Service}]; c != nil && c.status == ledger.ConsentActive {
		switch {
		case at.Equal(c.until.Add(-time.Second)):
			s.w.seen["judged at the window's last second"]++
		case at.Equal(c.until):
			s.w.seen["judged at the window's end"]++
		}
	}
}

func (s *seq) nextID() tx.Bytes {
	s.ids++
	id := make([]byte, 16)
	copy(id, fmt.Sprintf("rec%013d", s.ids))
	return id
}

func (s *seq) describe(r *tx.AccessRecord) string {
	src := ""
	if r.Source != "" {
		src = " from " + r.Source
	}
	out := ""
	if r.Outcome == tx.OutcomeDenied {
		out = " (denied " + r.Reason + ")"
	}
	return fmt.Sprintf("%s %s of %s by %s%s %v %s%s", r.Channel, r.Service, s.name(r.Subject), r.Reader, src, r.Claims, recordName(r.ID), out)
}

// recordName is "#n" for the n-th record id of a sequence.
func recordName(id []byte) string { return "#" + string(bytes.TrimLeft(id[3:], "0")) }

// compareConsents checks every pseudonym's consent to every service against
// the model.
func (s *seq) compareConsents(app *ledger.App) error {
	for _, ps := range s.w.psns {
		for _, p := range ps {
			for _, svc := range s.w.services {
				got, _, err := app.Consent(p.id, svc, 0)
				want := s.m.consents[[2]string{p.id, svc}]
				switch {
				case errors.Is(err, ledger.ErrNotFound) && want == nil:
					continue
				case err != nil && !errors.Is(err, ledger.ErrNotFound):
					return err
				case want == nil:
					return fmt.Errorf("%s has a consent to %s the model does not know: %+v", s.name(p.id), svc, got)
				case got == nil:
					return fmt.Errorf("%s has no consent to %s; the model has %+v", s.name(p.id), svc, want)
				}
				if got.Status != want.status || got.Mode != want.mode || !got.Until.Equal(want.until) || got.ServiceVersion != want.version ||
					got.Authority != want.reader || !slices.Equal(got.Claims, want.claims) || !slices.Equal(got.Sources, want.sources) {
					return fmt.Errorf("consent of %s to %s:\n  node  %s %s until %s v%d %s %v %v\n  model %s %s until %s v%d %s %v %v",
						s.name(p.id), svc,
						got.Status, got.Mode, got.Until.Format(time.RFC3339), got.ServiceVersion, got.Authority, got.Claims, got.Sources,
						want.status, want.mode, want.until.Format(time.RFC3339), want.version, want.reader, want.claims, want.sources)
				}
			}
		}
	}
	return nil
}
