package ledger

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	abci "github.com/cometbft/cometbft/abci/types"
	"github.com/cosmos/iavl"
	idb "github.com/cosmos/iavl/db"
)

// State sync snapshots.
//
// A node that joins a long chain need not replay every block: CometBFT's
// state sync fetches a snapshot of the application state from its peers,
// checks the app hash of the snapshot's height with a light client, and
// hands the snapshot to the application (OfferSnapshot, ApplySnapshotChunk)
// which restores it. Serving nodes take snapshots every few heights after
// Commit and offer them (ListSnapshots, LoadSnapshotChunk).
//
// Format 1 is iavl's own export of the tree at the snapshot's height: its
// nodes in depth-first post-order, as iavl's Exporter yields them and its
// Importer takes them, which recreates the same tree and so the same root.
// Each node is
//
//	height   1 byte, the node's subtree height as int8 (0 for a leaf)
//	version  uvarint, the version (height) the node was written at
//	key      uvarint length, then the bytes
//	value    leaves only: uvarint length, then the bytes
//
// and the stream is cut into chunks after the first node that brings a
// chunk to ChunkSize bytes or more, so that no node spans two chunks and
// each chunk can be imported as it arrives. Snapshot.Metadata is the state
// root the snapshot restores (32 bytes) followed by the SHA-256 of each
// chunk; Snapshot.Hash is the SHA-256 of Metadata. The encoding has no
// compression and no map order, so every node of a network writes the same
// bytes for a height, and a joining node may fetch its chunks from all of
// them (the ABCI spec asks for that).
//
// Only the Merkle-committed state is in a snapshot. Transaction results,
// which the ledger keeps beside the tree, are not: a node restored from a
// snapshot at height H knows the results of the transactions in blocks
// after H only, so GET /v1/txs/{hash} answers "not found" there for an
// older transaction that the nodes which replayed the chain still know.

// SnapshotFormat is the only snapshot format this ledger writes and restores.
const SnapshotFormat uint32 = 1

// Defaults of SnapshotConfig.
const (
	// DefaultSnapshotChunkSize is below CometBFT's 16 MB limit on a chunk
	// message, and small enough that a refetched chunk costs little.
	DefaultSnapshotChunkSize = 4 << 20
	// DefaultSnapshotKeep: the newest snapshot, and the one before it for a
	// node still restoring it when the newest was taken.
	DefaultSnapshotKeep = 2
)

// Snapshot errors.
var (
	errNoRestore     = errors.New("no snapshot restore in progress")
	errBadSnapshot   = errors.New("malformed snapshot")
	errRootMismatch  = errors.New("restored state root does not match the app hash")
	errExportStopped = errors.New("the App is closing")
)

// SnapshotConfig configures the snapshots an App takes and serves.
type SnapshotConfig struct {
	// Dir holds the snapshots, one directory per height. Required.
	Dir string
	// Interval is the number of heights between snapshots: one is taken
	// after each height that is a multiple of Interval. Zero takes none,
	// but still serves those already in Dir.
	Interval int64
	// Keep is how many of the newest snapshots are kept; older ones are
	// deleted. Default: DefaultSnapshotKeep.
	Keep int
	// ChunkSize is the size at which a chunk is cut. Nodes of one network
	// should leave it at its default, DefaultSnapshotChunkSize: snapshots
	// cut differently are different snapshots, and a joining node fetches
	// the chunks of one snapshot only from the peers that hold that one.
	ChunkSize int
}

// snapshotMeta is the description of a stored snapshot, in its directory's
// snapshotMetaFile. It is what ListSnapshots offers.
type snapshotMeta struct {
	Height   uint64 `json:"height"`
	Format   uint32 `json:"format"`
	Chunks   uint32 `json:"chunks"`
	Hash     []byte `json:"hash"`
	Metadata []byte `json:"metadata"`
}

const (
	snapshotMetaFile = "snapshot.json"
	// exportCacheNodes is the node cache of the tree an export reads
	// through: each node is read once, so it only spares re-reading the
	// path to the root.
	exportCacheNodes = 10_000
)

// snapshotStore is the snapshots of one App: those on disk, and the export
// running in the background, if any.
type snapshotStore struct {
	SnapshotConfig
	log *slog.Logger

	mu      sync.Mutex
	list    []snapshotMeta // oldest first
	busy    bool           // an export is running
	pending int64          // a height due while it ran, exported next

	stop chan struct{}
	wg   sync.WaitGroup
}

// EnableSnapshots makes a take a snapshot every c.Interval heights after
// Commit, and serve the snapshots in c.Dir to joining nodes. Call it once,
// before the node starts. An unfinished snapshot left by a crash is
// removed.
func (a *App) EnableSnapshots(c SnapshotConfig) error {
	if c.Dir == "" {
		return errors.New("couldn't enable snapshots: no directory")
	}
	if c.Interval < 0 || c.Keep < 0 || c.ChunkSize < 0 {
		return errors.New("couldn't enable snapshots: negative interval, count or chunk size")
	}
	if c.Keep == 0 {
		c.Keep = DefaultSnapshotKeep
	}
	if c.ChunkSize == 0 {
		c.ChunkSize = DefaultSnapshotChunkSize
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return fmt.Errorf("couldn't create snapshot directory: %w", err)
	}
	s := &snapshotStore{SnapshotConfig: c, log: a.log, stop: make(chan struct{})}
	if err := s.load(); err != nil {
		return err
	}
	a.snaps = s
	return nil
}

// load reads the snapshots in Dir and removes unfinished ones.
func (s *snapshotStore) load() error {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return fmt.Errorf("couldn't read snapshot directory: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		h, err := strconv.ParseUint(name, 10, 64)
		if !e.IsDir() || err != nil || strconv.FormatUint(h, 10) != name {
			if e.IsDir() && strings.HasSuffix(name, ".tmp") {
				// An export a crash or a stop interrupted.
				_ = os.RemoveAll(filepath.Join(s.Dir, name))
			}
			continue
		}
		m, err := readSnapshotMeta(filepath.Join(s.Dir, name))
		if err != nil || m.Height != h {
			s.log.Error("ignoring a damaged snapshot", "dir", filepath.Join(s.Dir, name), "err", err)
			continue
		}
		s.list = append(s.list, *m)
	}
	slices.SortFunc(s.list, func(a, b snapshotMeta) int { return cmp.Compare(a.Height, b.Height) })
	s.prune()
	return nil
}

func readSnapshotMeta(dir string) (*snapshotMeta, error) {
	b, err := os.ReadFile(filepath.Join(dir, snapshotMetaFile))
	if err != nil {
		return nil, err
	}
	var m snapshotMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if _, err := checkSnapshot(m.Format, m.Chunks, m.Hash, m.Metadata); err != nil {
		return nil, err
	}
	return &m, nil
}

// prune deletes all but the Keep newest snapshots. The caller holds s.mu,
// or is load.
func (s *snapshotStore) prune() {
	for len(s.list) > s.Keep {
		old := s.list[0]
		s.list = s.list[1:]
		if err := os.RemoveAll(filepath.Join(s.Dir, strconv.FormatUint(old.Height, 10))); err != nil {
			s.log.Error("couldn't remove an old snapshot", "height", old.Height, "err", err)
		}
	}
}

// snapshotAfterCommit starts an export of height h in the background if h
// is due for a snapshot. Commit calls it once h is saved.
func (a *App) snapshotAfterCommit(h int64) {
	s := a.snaps
	if s == nil || s.Interval <= 0 || h <= 0 || h%s.Interval != 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.stop:
		return
	default:
	}
	if s.busy {
		// Exports don't pile up behind a slow disk: the newest due height
		// waits, and replaces one that was already waiting.
		if s.pending != 0 {
			s.log.Warn("skipping a snapshot: exports are slower than the interval", "height", s.pending)
		}
		s.pending = h
		return
	}
	s.busy = true
	s.wg.Add(1)
	go s.run(a.db, h)
}

// run exports height h, then each height that fell due meanwhile.
func (s *snapshotStore) run(db idb.DB, h int64) {
	defer s.wg.Done()
	for {
		began := time.Now()
		m, err := s.export(db, h)
		s.mu.Lock()
		switch {
		case errors.Is(err, errExportStopped):
		case err != nil:
			s.log.Error("couldn't take a snapshot", "height", h, "err", err)
		default:
			s.list = append(s.list, *m)
			s.prune()
			s.log.Info("took a snapshot", "height", h, "chunks", m.Chunks, "took", time.Since(began).Round(time.Millisecond))
		}
		h, s.pending = s.pending, 0
		stopped := false
		select {
		case <-s.stop:
			stopped = true
		default:
		}
		if h == 0 || stopped {
			s.busy = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
}

// export writes the snapshot of version h of the tree in db.
//
// Why this may run beside consensus: it reads version h through a tree of
// its own, with its own node cache, so it shares no iavl node with the
// App's tree, whose Set rewrites child pointers of nodes it loaded. The
// nodes of a saved version are immutable in the database (iavl writes new
// versions under new keys, and the ledger deletes no version), and the
// database is safe for concurrent use.
func (s *snapshotStore) export(db idb.DB, h int64) (m *snapshotMeta, err error) {
	tree := iavl.NewMutableTree(db, exportCacheNodes, true, iavl.NewNopLogger())
	defer tree.Close()
	im, err := tree.GetImmutable(h)
	if err != nil {
		return nil, fmt.Errorf("couldn't load version %d: %w", h, err)
	}
	root := im.Hash()
	exp, err := im.Export()
	if err != nil {
		return nil, fmt.Errorf("couldn't export version %d: %w", h, err)
	}
	defer exp.Close()

	final := filepath.Join(s.Dir, strconv.FormatInt(h, 10))
	tmp := final + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return nil, err
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()

	meta := bytes.Clone(root)
	var buf []byte
	var chunks uint32
	flush := func() error {
		sum := sha256.Sum256(buf)
		if err := writeFileSync(filepath.Join(tmp, chunkFile(chunks)), buf); err != nil {
			return err
		}
		meta = append(meta, sum[:]...)
		chunks++
		buf = buf[:0]
		return nil
	}
	var leaves int64
	for {
		n, err := exp.Next()
		if errors.Is(err, iavl.ErrorExportDone) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("couldn't export version %d: %w", h, err)
		}
		select {
		case <-s.stop:
			return nil, errExportStopped
		default:
		}
		buf = appendExportNode(buf, n)
		if n.Height == 0 {
			leaves++
		}
		if len(buf) >= s.ChunkSize {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	// iavl's traversal ends silently on a read error: a short export would
	// be a snapshot no one can restore.
	if leaves != im.Size() {
		return nil, fmt.Errorf("export of version %d has %d keys, the tree %d", h, leaves, im.Size())
	}
	if len(buf) > 0 || chunks == 0 {
		if err := flush(); err != nil {
			return nil, err
		}
	}
	hash := sha256.Sum256(meta)
	m = &snapshotMeta{Height: uint64(h), Format: SnapshotFormat, Chunks: chunks, Hash: hash[:], Metadata: meta}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if err := writeFileSync(filepath.Join(tmp, snapshotMetaFile), b); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(final); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, err
	}
	return m, syncDir(s.Dir)
}

func chunkFile(i uint32) string { return fmt.Sprintf("chunk-%06d", i) }

// appendExportNode appends n in format 1.
func appendExportNode(b []byte, n *iavl.ExportNode) []byte {
	b = append(b, byte(n.Height))
	b = binary.AppendUvarint(b, uint64(n.Version))
	b = binary.AppendUvarint(b, uint64(len(n.Key)))
	b = append(b, n.Key...)
	if n.Height == 0 {
		b = binary.AppendUvarint(b, uint64(len(n.Value)))
		b = append(b, n.Value...)
	}
	return b
}

// decodeChunk reads the nodes of a format 1 chunk of a snapshot at height
// h. It checks what iavl's Importer would trip over (a version it cannot
// index, a negative height); whether the nodes make a tree with the right
// root is for the import to find out.
func decodeChunk(b []byte, h uint64) ([]*iavl.ExportNode, error) {
	var out []*iavl.ExportNode
	field := func(what string) ([]byte, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, fmt.Errorf("%w: bad %s length", errBadSnapshot, what)
		}
		v := b[k : k+int(n)]
		b = b[k+int(n):]
		return v, nil
	}
	for len(b) > 0 {
		height := int8(b[0])
		b = b[1:]
		if height < 0 {
			return nil, fmt.Errorf("%w: negative node height", errBadSnapshot)
		}
		v, k := binary.Uvarint(b)
		if k <= 0 || v < 1 || v > h {
			return nil, fmt.Errorf("%w: node version out of range", errBadSnapshot)
		}
		b = b[k:]
		key, err := field("key")
		if err != nil {
			return nil, err
		}
		n := &iavl.ExportNode{Height: height, Version: int64(v), Key: bytes.Clone(key)}
		if height == 0 {
			val, err := field("value")
			if err != nil {
				return nil, err
			}
			n.Value = append([]byte{}, val...) // a leaf's value is never nil
		}
		out = append(out, n)
	}
	return out, nil
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// close stops a running export and waits for it. Safe on a nil store.
func (s *snapshotStore) close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// checkSnapshot checks a snapshot's description for format 1 and returns
// the chunk hashes its metadata lists.
func checkSnapshot(format, chunks uint32, hash, metadata []byte) ([][]byte, error) {
	if format != SnapshotFormat {
		return nil, fmt.Errorf("%w: format %d", errBadSnapshot, format)
	}
	if chunks == 0 || uint64(len(metadata)) != sha256.Size*(1+uint64(chunks)) {
		return nil, fmt.Errorf("%w: %d chunks, %d bytes of metadata", errBadSnapshot, chunks, len(metadata))
	}
	if sum := sha256.Sum256(metadata); !bytes.Equal(sum[:], hash) {
		return nil, fmt.Errorf("%w: hash does not match metadata", errBadSnapshot)
	}
	out := make([][]byte, chunks)
	for i := range out {
		out[i] = metadata[sha256.Size*(i+1) : sha256.Size*(i+2)]
	}
	return out, nil
}

// ListSnapshots offers the stored snapshots to a joining node.
func (a *App) ListSnapshots(context.Context, *abci.RequestListSnapshots) (*abci.ResponseListSnapshots, error) {
	res := &abci.ResponseListSnapshots{}
	s := a.snaps
	if s == nil {
		return res, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.list {
		res.Snapshots = append(res.Snapshots, &abci.Snapshot{
			Height: m.Height, Format: m.Format, Chunks: m.Chunks, Hash: bytes.Clone(m.Hash), Metadata: bytes.Clone(m.Metadata),
		})
	}
	return res, nil
}

// LoadSnapshotChunk returns a chunk of a stored snapshot. A chunk it no
// longer has (pruned meanwhile) or that is damaged on disk comes back
// empty, which CometBFT reports to the asking peer as missing.
func (a *App) LoadSnapshotChunk(_ context.Context, req *abci.RequestLoadSnapshotChunk) (*abci.ResponseLoadSnapshotChunk, error) {
	res := &abci.ResponseLoadSnapshotChunk{}
	s := a.snaps
	if s == nil || req.Format != SnapshotFormat {
		return res, nil
	}
	s.mu.Lock()
	i := slices.IndexFunc(s.list, func(m snapshotMeta) bool { return m.Height == req.Height })
	var want []byte
	if i >= 0 && req.Chunk < s.list[i].Chunks {
		want = s.list[i].Metadata[sha256.Size*(int(req.Chunk)+1) : sha256.Size*(int(req.Chunk)+2)]
	}
	s.mu.Unlock()
	if want == nil {
		return res, nil
	}
	b, err := os.ReadFile(filepath.Join(s.Dir, strconv.FormatUint(req.Height, 10), chunkFile(req.Chunk)))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Error("couldn't read a snapshot chunk", "height", req.Height, "chunk", req.Chunk, "err", err)
		}
		return res, nil
	}
	if sum := sha256.Sum256(b); !bytes.Equal(sum[:], want) {
		s.log.Error("a snapshot chunk on disk is damaged", "height", req.Height, "chunk", req.Chunk)
		return res, nil
	}
	res.Chunk = b
	return res, nil
}

// restore is a snapshot being restored.
type restore struct {
	height  uint64
	appHash []byte
	hashes  [][]byte // of each chunk, from the snapshot's metadata
	next    uint32   // the chunk expected next
	imp     *iavl.Importer
	// done: the state already is the snapshot's (restored by an earlier
	// run that stopped before CometBFT recorded it); chunks are checked
	// and dropped.
	done bool
}

// restoreMarker, in the state directory, says a restore has begun and not
// finished: Open then clears the state database, which holds nodes of no
// version iavl could load.
const restoreMarker = "restoring"

// OfferSnapshot accepts a format 1 snapshot whose metadata is whole and
// names the app hash CometBFT's light client verified for its height.
// Only that app hash is trusted; everything else is checked as it arrives.
func (a *App) OfferSnapshot(_ context.Context, req *abci.RequestOfferSnapshot) (*abci.ResponseOfferSnapshot, error) {
	reject := func(r abci.ResponseOfferSnapshot_Result, why string, args ...any) (*abci.ResponseOfferSnapshot, error) {
		a.log.Warn("refused a snapshot: "+why, append([]any{"height", req.Snapshot.GetHeight(), "format", req.Snapshot.GetFormat()}, args...)...)
		return &abci.ResponseOfferSnapshot{Result: r}, nil
	}
	sn := req.Snapshot
	if sn == nil {
		return reject(abci.ResponseOfferSnapshot_REJECT, "no snapshot")
	}
	if sn.Format != SnapshotFormat {
		return reject(abci.ResponseOfferSnapshot_REJECT_FORMAT, "unknown format")
	}
	hashes, err := checkSnapshot(sn.Format, sn.Chunks, sn.Hash, sn.Metadata)
	if err != nil {
		return reject(abci.ResponseOfferSnapshot_REJECT, "malformed", "err", err)
	}
	if len(req.AppHash) != sha256.Size || !bytes.Equal(sn.Metadata[:sha256.Size], req.AppHash) {
		return reject(abci.ResponseOfferSnapshot_REJECT, "it restores another state than the chain's at its height",
			"snapshot_root", fmt.Sprintf("%X", sn.Metadata[:sha256.Size]), "app_hash", fmt.Sprintf("%X", req.AppHash))
	}
	if sn.Height < 1 || sn.Height > 1<<40 {
		return reject(abci.ResponseOfferSnapshot_REJECT, "height out of range")
	}
	a.abandonRestore()
	r := &restore{height: sn.Height, appHash: bytes.Clone(req.AppHash), hashes: hashes}
	if v := a.tree.Version(); v != 0 {
		if uint64(v) == sn.Height && bytes.Equal(a.tree.Hash(), req.AppHash) {
			r.done = true
			a.restore = r
			return &abci.ResponseOfferSnapshot{Result: abci.ResponseOfferSnapshot_ACCEPT}, nil
		}
		a.log.Error("state sync needs an empty state, but this node's state database holds a height; "+
			"remove it (the home's state/ directory) to state sync, or turn state sync off to go on from it", "height", v)
		return &abci.ResponseOfferSnapshot{Result: abci.ResponseOfferSnapshot_ABORT}, nil
	}
	if err := a.markRestore(true); err != nil {
		return nil, err
	}
	// Nodes of an earlier attempt, if any, would confuse iavl's notion of
	// the latest version.
	if err := a.resetState(); err != nil {
		return nil, err
	}
	r.imp, err = a.tree.Import(int64(sn.Height))
	if err != nil {
		return nil, fmt.Errorf("couldn't start importing a snapshot: %w", err)
	}
	a.restore = r
	a.log.Info("restoring a snapshot", "height", sn.Height, "chunks", sn.Chunks)
	return &abci.ResponseOfferSnapshot{Result: abci.ResponseOfferSnapshot_ACCEPT}, nil
}

// ApplySnapshotChunk checks a chunk against the hash the snapshot's
// metadata lists for it and imports its nodes; after the last chunk it
// commits the import and checks the state root against the app hash.
//
// A chunk whose hash is wrong was damaged or forged by the peer that sent
// it: it is fetched again (RETRY, with the chunk to refetch and the sender
// to reject). Nodes that do not make a tree, or a tree whose root is not
// the app hash, mean the snapshot itself is bad, though its chunks match
// its metadata: REJECT_SNAPSHOT, and CometBFT tries another.
func (a *App) ApplySnapshotChunk(_ context.Context, req *abci.RequestApplySnapshotChunk) (*abci.ResponseApplySnapshotChunk, error) {
	res := func(r abci.ResponseApplySnapshotChunk_Result) *abci.ResponseApplySnapshotChunk {
		return &abci.ResponseApplySnapshotChunk{Result: r}
	}
	r := a.restore
	if r == nil {
		a.log.Error("snapshot chunk without an accepted snapshot", "err", errNoRestore)
		return res(abci.ResponseApplySnapshotChunk_ABORT), nil
	}
	if req.Index != r.next {
		// CometBFT applies chunks in order; anything else starts over.
		return res(abci.ResponseApplySnapshotChunk_RETRY_SNAPSHOT), nil
	}
	if sum := sha256.Sum256(req.Chunk); !bytes.Equal(sum[:], r.hashes[req.Index]) {
		a.log.Warn("a snapshot chunk does not match its hash; fetching it again", "height", r.height, "chunk", req.Index, "sender", req.Sender)
		out := &abci.ResponseApplySnapshotChunk{Result: abci.ResponseApplySnapshotChunk_RETRY, RefetchChunks: []uint32{req.Index}}
		if req.Sender != "" {
			out.RejectSenders = []string{req.Sender}
		}
		return out, nil
	}
	if !r.done {
		if err := r.importChunk(req.Chunk); err != nil {
			a.log.Warn("refused a snapshot: its nodes do not make a tree", "height", r.height, "chunk", req.Index, "err", err)
			if err := a.failRestore(); err != nil {
				return nil, err
			}
			return res(abci.ResponseApplySnapshotChunk_REJECT_SNAPSHOT), nil
		}
	}
	r.next++
	if int(r.next) < len(r.hashes) {
		return res(abci.ResponseApplySnapshotChunk_ACCEPT), nil
	}
	if r.done {
		a.restore = nil
		return res(abci.ResponseApplySnapshotChunk_ACCEPT), nil
	}
	if err := a.finishRestore(r); err != nil {
		a.log.Warn("refused a snapshot", "height", r.height, "err", err)
		if err := a.failRestore(); err != nil {
			return nil, err
		}
		return res(abci.ResponseApplySnapshotChunk_REJECT_SNAPSHOT), nil
	}
	a.log.Info("restored a snapshot", "height", r.height, "app_hash", fmt.Sprintf("%X", r.appHash))
	return res(abci.ResponseApplySnapshotChunk_ACCEPT), nil
}

// importChunk feeds a verified chunk's nodes to the importer. The chunk's
// creator may still have been malicious: iavl's Importer was written for
// trusted exports, so a panic in it refuses the snapshot rather than
// taking the node down.
func (r *restore) importChunk(chunk []byte) (err error) {
	nodes, err := decodeChunk(chunk, r.height)
	if err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: import failed: %v", errBadSnapshot, p)
		}
	}()
	for _, n := range nodes {
		if err := r.imp.Add(n); err != nil {
			return fmt.Errorf("%w: %w", errBadSnapshot, err)
		}
	}
	return nil
}

// finishRestore commits the import as the snapshot's version and points
// everything the App keeps beside the tree at it.
func (a *App) finishRestore(r *restore) (err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	func() {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("%w: import failed: %v", errBadSnapshot, p)
			}
		}()
		err = r.imp.Commit()
	}()
	r.imp = nil
	if err != nil {
		return fmt.Errorf("couldn't commit the import: %w", err)
	}
	if v := a.tree.Version(); v != int64(r.height) || !bytes.Equal(a.tree.Hash(), r.appHash) {
		return fmt.Errorf("%w: version %d root %X, want %d %X", errRootMismatch, v, a.tree.Hash(), r.height, r.appHash)
	}
	if err := a.refreshLatest(); err != nil {
		return err
	}
	// What the App keeps outside the tree. InitChain, which sets the chain
	// id on other nodes, is not called on a node that state syncs: it
	// comes from the restored state, as after a restart. The block time
	// is unknown until the next block: CheckAccess and time-bound checks
	// wait for it, as after a restart. Validator keys are read from the
	// state when needed; nothing caches them.
	a.chainID = getMeta(treeKV{a.latest}).ChainID
	a.lastBlock = Stamp{}
	a.restore = nil
	if err := a.markRestore(false); err != nil {
		return err
	}
	a.metrics.committed(a.latest.Version(), 0)
	return nil
}

// failRestore abandons the restore and empties the state for the next
// snapshot.
func (a *App) failRestore() error {
	a.abandonRestore()
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.resetStateLocked(); err != nil {
		return err
	}
	return a.markRestore(false)
}

// abandonRestore drops the restore in progress, if any.
func (a *App) abandonRestore() {
	r := a.restore
	a.restore = nil
	if r != nil && r.imp != nil {
		r.imp.Close()
	}
}

func (a *App) resetState() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.resetStateLocked()
}

// resetStateLocked deletes everything in the state database and starts an
// empty tree over it. Only for what a restore left: nodes of no committed
// version, or a restored version whose root was wrong. The caller holds
// a.mu.
func (a *App) resetStateLocked() error {
	if err := clearDB(a.db); err != nil {
		return fmt.Errorf("couldn't clear the state database: %w", err)
	}
	_ = a.tree.Close() // releases its write batch; the database stays open
	a.tree = iavl.NewMutableTree(a.db, cacheNodes, false, iavl.NewNopLogger())
	if _, err := a.tree.Load(); err != nil {
		return fmt.Errorf("couldn't load state: %w", err)
	}
	return a.refreshLatest()
}

// clearDB deletes every key of db, a batch at a time: no write may happen
// in a domain an iterator is open over.
func clearDB(db idb.DB) error {
	for {
		it, err := db.Iterator(nil, nil)
		if err != nil {
			return err
		}
		var keys [][]byte
		for ; it.Valid() && len(keys) < 10_000; it.Next() {
			keys = append(keys, bytes.Clone(it.Key()))
		}
		err = errors.Join(it.Error(), it.Close())
		if err != nil || len(keys) == 0 {
			return err
		}
		b := db.NewBatch()
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				b.Close()
				return err
			}
		}
		err = b.WriteSync()
		b.Close()
		if err != nil {
			return err
		}
	}
}

// markRestore creates or removes the restore marker. An in-memory App has
// none.
func (a *App) markRestore(on bool) error {
	if a.dir == "" {
		return nil
	}
	p := filepath.Join(a.dir, restoreMarker)
	if on {
		return writeFileSync(p, nil)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// clearUnfinishedRestore empties the state database in dir if a restore
// began there and did not finish. Open calls it before loading the tree.
func clearUnfinishedRestore(dir string, db idb.DB) error {
	p := filepath.Join(dir, restoreMarker)
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := clearDB(db); err != nil {
		return fmt.Errorf("couldn't clear an unfinished restore: %w", err)
	}
	return os.Remove(p)
}

// closeSnapshots stops a running export and an unfinished restore. Close
// calls it before closing the databases they read.
func (a *App) closeSnapshots() {
	a.snaps.close()
	a.abandonRestore()
}
