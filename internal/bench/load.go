package bench

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/idnumber"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/node"
	"github.com/imi-city/imi/internal/tx"
)

// ChainID is the chain every benchmark node runs. One name for both apps,
// because CometBFT's Prometheus metrics, registered once per process, are
// labelled with it.
const ChainID = "imi-bench-1"

// Fixed seeds for the benchmark's identities. They are public: the keys
// sign nothing outside a throw-away benchmark chain, and being fixed lets
// one Load serve every run.
const (
	registrarSeedLabel = "imi/bench/registrar"
	residentSeedLabel  = "imi/bench/resident"
	recoverySeedLabel  = "imi/bench/recovery"
	hmacSeedLabel      = "imi/bench/uniqueness"
	validatorSeedLabel = "imi/bench/validator-authority"
)

// lanes is how many parallel sequence lanes one registrar has.
const lanes = tx.MaxLanes

// Load is a set of transactions, made and signed before any timing starts,
// split into streams: each stream is submitted in order by one goroutine
// (node path) or one HTTP client. For IMI a stream is one (registrar, lane)
// pair, so its sequence numbers must arrive in order; the streams are
// independent of each other.
//
// A Load doesn't depend on the node it is run against (the validator key
// enters only the genesis), so one Load serves every run.
type Load struct {
	app        App
	registrars []key.Private // IMI: registrar s/lanes signs stream s; Access: registrar 0 signs all
	txs        [][]byte
	streams    [][]int32
	// index finds a transaction's position from its bytes, so the
	// commit meter can tell the load's transactions apart.
	index map[string]int32

	// setup are transactions Run commits before timing starts, in no
	// particular order: an access load's consents. setupIndex holds their
	// bytes, for the meter.
	setup      [][]byte
	setupIndex map[string]struct{}
	// access made an access load's transactions, and knows its residents.
	access *accessMaker
}

// NewLoad makes n transactions for app in the given number of streams.
//
// IMI transactions are resident registrations: each has its own resident
// key, recovery-key commitment and uniqueness tag (the HMAC of a synthetic
// GB 11643 ID number), with high assurance, signed by a registrar
// authority; streams beyond 256 use further registrars, as one registrar
// has 256 lanes.
//
// kvstore transactions are "key=value" pairs, padded to the size of an IMI
// registration, so both apps move the same bytes through the mempool,
// blocks and the WAL.
//
// Access transactions are batches of access records for DefaultConsents
// residents; see NewAccessLoad.
func NewLoad(app App, n, streams int) (*Load, error) {
	return newLoad(app, n, streams, DefaultConsents)
}

// NewAccessLoad makes n record_access transactions of ledger.MaxAccessBatch
// access records each, in the given number of streams (at most 256), and
// the consents of the residents they name, one standing grant by each
// resident's pseudonym, to be committed before timing. Record r names
// resident r mod consents; every record is new and is recorded "allowed"
// by the service's authority, which reads it at its counter.
func NewAccessLoad(n, streams, consents int) (*Load, error) {
	if consents <= 0 {
		return nil, fmt.Errorf("couldn't make load: %d consents", consents)
	}
	return newLoad(Access, n, streams, consents)
}

func newLoad(app App, n, streams, consents int) (*Load, error) {
	if n <= 0 {
		return nil, fmt.Errorf("couldn't make load: %d transactions", n)
	}
	if streams <= 0 || streams > n {
		streams = min(max(streams, 1), n)
	}
	l := &Load{app: app, txs: make([][]byte, n), streams: make([][]int32, streams)}
	for i := range n {
		s := i % streams
		l.streams[s] = append(l.streams[s], int32(i))
	}
	var make1 func(i int) ([]byte, error)
	switch app {
	case IMI:
		nreg := (streams + lanes - 1) / lanes
		for r := range nreg {
			k, err := key.FromSeed(seed(registrarSeedLabel, r))
			if err != nil {
				return nil, err
			}
			l.registrars = append(l.registrars, k)
		}
		g := &registrationMaker{regs: l.registrars, streams: streams}
		if err := g.init(); err != nil {
			return nil, err
		}
		make1 = g.make
	case KVStore:
		size, err := registrationSize()
		if err != nil {
			return nil, err
		}
		make1 = func(i int) ([]byte, error) { return kvTx(i, size), nil }
	case Access:
		k, err := key.FromSeed(seed(registrarSeedLabel, 0))
		if err != nil {
			return nil, err
		}
		l.registrars = []key.Private{k}
		g, err := newAccessMaker(k, streams, consents)
		if err != nil {
			return nil, fmt.Errorf("couldn't make load: %w", err)
		}
		l.access, make1 = g, g.make
		l.setup = make([][]byte, consents)
		if err := parallel(consents, func(j int) error {
			b, err := g.grant(j)
			l.setup[j] = b
			return err
		}); err != nil {
			return nil, fmt.Errorf("couldn't make load: %w", err)
		}
		l.setupIndex = make(map[string]struct{}, consents)
		for _, b := range l.setup {
			l.setupIndex[string(b)] = struct{}{}
		}
	default:
		return nil, fmt.Errorf("couldn't make load: unknown app %q", app)
	}
	if err := parallel(n, func(i int) error {
		b, err := make1(i)
		l.txs[i] = b
		return err
	}); err != nil {
		return nil, fmt.Errorf("couldn't make load: %w", err)
	}
	l.index = make(map[string]int32, n)
	for i, b := range l.txs {
		if _, dup := l.index[string(b)]; dup {
			return nil, fmt.Errorf("couldn't make load: transaction %d repeats an earlier one", i)
		}
		l.index[string(b)] = int32(i)
	}
	return l, nil
}

// App is the application the load is for.
func (l *Load) App() App { return l.app }

// Len is the number of transactions.
func (l *Load) Len() int { return len(l.txs) }

// Records is the number of access records each transaction carries: zero
// unless the load is an access load.
func (l *Load) Records() int {
	if l.app != Access {
		return 0
	}
	return ledger.MaxAccessBatch
}

// Setup is the number of transactions committed before timing: an access
// load's consents.
func (l *Load) Setup() int { return len(l.setup) }

// Streams is the number of independent ordered streams.
func (l *Load) Streams() int { return len(l.streams) }

// streamOf is the stream transaction i belongs to: NewLoad deals the
// transactions out to the streams in turn.
func (l *Load) streamOf(i int) int { return i % len(l.streams) }

// AvgBytes is the mean encoded size of a transaction.
func (l *Load) AvgBytes() int {
	var sum int
	for _, b := range l.txs {
		sum += len(b)
	}
	return sum / len(l.txs)
}

// Power is the voting power of each benchmark validator: all equal.
const Power = 10

// genesis is the chain's founding state for the load's app, with one
// validator of power Power for each of valKeys (every node of the run gets
// the same document).
//
// For IMI, registrar 0 is also the first validator, as a registrar's node
// is in a district; validators beyond the first are service providers
// bench-val-1, ... with keys of their own, and further registrars validate
// nothing. An access load's genesis has the same validators, registrar 0
// also publishing the service and the credential type (see accessState).
// The kvstore's genesis names only the validators.
func (l *Load) genesis(valKeys []ed25519.PublicKey) (node.Genesis, error) {
	if len(valKeys) == 0 {
		return node.Genesis{}, fmt.Errorf("couldn't make genesis: no validators")
	}
	g := node.Genesis{
		ChainID: ChainID,
		// A second in the past, so the nodes start at once; never the
		// future, which they would wait for.
		GenesisTime: time.Now().Add(-time.Second).Truncate(time.Second),
	}
	for i, vk := range valKeys {
		name := "bench-val-" + strconv.Itoa(i)
		if l.app != KVStore && i == 0 {
			name = "bench-reg-0"
		}
		g.Validators = append(g.Validators, node.GenesisValidator{Name: name, PubKey: vk, Power: Power})
	}
	var lg ledger.Genesis
	switch l.app {
	case KVStore:
		return g, nil
	case Access:
		s, err := accessState(l.registrars[0], valKeys[0])
		if err != nil {
			return node.Genesis{}, err
		}
		lg = s
	default:
		lg = l.registrarState(valKeys[0])
	}
	for i := 1; i < len(valKeys); i++ {
		k, err := key.FromSeed(seed(validatorSeedLabel, i))
		if err != nil {
			return node.Genesis{}, err
		}
		lg.Authorities = append(lg.Authorities, tx.AuthoritySpec{
			ID:     "bench-val-" + strconv.Itoa(i),
			NameZH: "基准验证机构" + strconv.Itoa(i), NameEN: "Benchmark Validator " + strconv.Itoa(i),
			Key:          k.Public(),
			Roles:        []string{ledger.RoleServiceProvider},
			ValidatorKey: tx.Bytes(valKeys[i]),
			Power:        Power,
		})
	}
	state, err := tx.Marshal(lg)
	if err != nil {
		return node.Genesis{}, fmt.Errorf("couldn't encode genesis state: %w", err)
	}
	g.AppState = state
	return g, nil
}

// registrarState is the ledger genesis of an IMI load: its registrars,
// the first of them validator 0 with key val0.
func (l *Load) registrarState(val0 []byte) ledger.Genesis {
	lg := ledger.Genesis{DistrictZH: "基准测试区", DistrictEN: "Benchmark District"}
	for r, k := range l.registrars {
		spec := tx.AuthoritySpec{
			ID:     "bench-reg-" + strconv.Itoa(r),
			NameZH: "基准登记机关" + strconv.Itoa(r), NameEN: "Benchmark Registrar " + strconv.Itoa(r),
			Key:   k.Public(),
			Roles: []string{ledger.RoleRegistrar},
		}
		if r == 0 {
			spec.ValidatorKey, spec.Power = tx.Bytes(val0), Power
		}
		lg.Authorities = append(lg.Authorities, spec)
	}
	return lg
}

// registrationMaker makes the i-th registration of a load.
type registrationMaker struct {
	regs    []key.Private
	streams int
	hmac    key.HMAC
}

func (g *registrationMaker) init() error {
	// The uniqueness key is random: tags only have to be distinct.
	h, err := key.GenerateHMAC()
	g.hmac = h
	return err
}

// epoch is the birth date of resident 0; every thousand residents are born
// a day later, each with a sequence number of their own that day.
var epoch = time.Date(1940, 1, 1, 0, 0, 0, 0, time.UTC)

func (g *registrationMaker) make(i int) ([]byte, error) {
	s := i % g.streams
	reg := g.regs[s/lanes]
	rk, err := key.FromSeed(seed(residentSeedLabel, i))
	if err != nil {
		return nil, err
	}
	recovery, err := key.PublicFromBytes(seed(recoverySeedLabel, i))
	if err != nil {
		return nil, err
	}
	born := epoch.AddDate(0, 0, i/1000)
	num, err := idnumber.Example("440604", born.Year(), int(born.Month()), born.Day(), i%1000)
	if err != nil {
		return nil, fmt.Errorf("resident %d: %w", i, err)
	}
	t, err := tx.New(ChainID, did.FromKey(reg.Public()).String(), uint32(s%lanes), uint64(i/g.streams), &tx.RegisterResident{
		DID:           did.FromKey(rk.Public()).String(),
		Key:           rk.Public(),
		RecoveryHash:  key.RecoveryHash(recovery),
		UniquenessTag: idnumber.UniquenessTag(g.hmac, num),
		Assurance:     "high",
	})
	if err != nil {
		return nil, err
	}
	t.Sign(reg)
	return t.Encode(), nil
}

// registrationSize is the encoded size of a typical registration.
func registrationSize() (int, error) {
	k, err := key.FromSeed(seed(registrarSeedLabel, 0))
	if err != nil {
		return 0, err
	}
	g := &registrationMaker{regs: []key.Private{k}, streams: 1}
	if err := g.init(); err != nil {
		return 0, err
	}
	b, err := g.make(12345)
	return len(b), err
}

// kvTx is the i-th kvstore transaction, "bench<i>=<hex>", size bytes long.
func kvTx(i, size int) []byte {
	b := fmt.Appendf(nil, "bench%09d=", i)
	size = max(size, len(b)+1) // a value can't be empty
	h := sha256.Sum256(b)
	for len(b) < size {
		b = hex.AppendEncode(b, h[:])
	}
	return b[:size]
}

// seed is a 32-byte seed for the i-th key of a purpose.
func seed(label string, i int) []byte {
	h := sha256.New()
	h.Write([]byte(label))
	h.Write([]byte{0})
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(i)))
	return h.Sum(nil)
}

// parallel calls f(i) for i in [0, n) on every CPU and returns the first
// error.
func parallel(n int, f func(i int) error) error {
	workers := min(runtime.GOMAXPROCS(0), n)
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if err := f(i); err != nil {
					errOnce.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}
