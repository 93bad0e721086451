package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	cmted25519 "github.com/cometbft/cometbft/crypto/ed25519"

	"github.com/imi-city/imi/internal/district"
	"github.com/imi-city/imi/internal/httpapi"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

// govLane is the lane the authorities sign their proposals and votes on
// here, apart from the load's lanes and the anchor's.
const govLane = 210

// TestAuthorityJoinsByVote grows the consortium by a vote: a fifth
// authority's node, written by WriteTestnet as a standby with the same
// genesis, syncs the chain as a plain full node; the founders vote it in
// (three of four approvals are more than two thirds); from the block the
// validator update takes effect every node counts five validators, and with
// one founder stopped the network goes on only because the newcomer signs:
// four of five, power 40 of 50, is a quorum, and three of them are not.
func TestAuthorityJoinsByVote(t *testing.T) {
	skipShort(t)
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 5))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	began := time.Now()

	// 1. Four founders and one standby; the founders run.
	dir := t.TempDir()
	base := freeBasePort(t, 5)
	nodes, err := district.WriteTestnet(filepath.Join(dir, "net"), district.TestnetOptions{
		Validators: 4, Standby: 1, ChainID: consortiumChainID, BasePort: base,
		GenesisTime: time.Now().UTC().Truncate(time.Second),
	})
	if err != nil {
		t.Fatalf("couldn't write the testnet: %v", err)
	}
	if len(nodes) != 5 || nodes[4].Validator || slices.ContainsFunc(nodes[:4], func(n district.TestnetNode) bool { return !n.Validator }) {
		t.Fatalf("WriteTestnet wrote %+v, want four validators then one standby", nodes)
	}
	all := &consortium{t: t, dir: dir}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tn := range nodes {
		m := &member{TestnetNode: tn, api: newAPI(tn.HTTP)}
		m.log, m.logPath = memberLog(t, dir, tn.Name)
		all.nodes = append(all.nodes, m)
	}
	founders := &consortium{t: t, dir: dir, nodes: all.nodes[:4]}
	newcomer := all.nodes[4]
	t.Logf("testnet of 4 validators and standby %s (%s), base port %d, in %s", newcomer.Name, newcomer.AuthorityID, base, dir)
	founders.startAll(ctx, 60*time.Second)
	t.Logf("4 founders up in %v", time.Since(began).Round(time.Millisecond))

	// 2. Some history, then the standby starts and syncs it.
	l := newLoad(t, founders, seed)
	anchor, err := l.registerAnchor(ctx, founders.nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	loadBegan := time.Now()
	l.start(ctx)
	time.Sleep(3 * time.Second)
	if err := l.stopAndWait(30 * time.Second); err != nil {
		t.Fatalf("clients: %v", err)
	}
	t.Logf("load: %s", l.summary(time.Since(loadBegan)))
	target := slices.Max(founders.heights(ctx))

	syncBegan := time.Now()
	all.start(newcomer)
	sawCatchingUp := false
	var s4 *httpapi.StatusResponse
	for {
		if time.Since(syncBegan) > 45*time.Second {
			t.Fatalf("%s did not catch up with height %d within 45 s (last: %+v)", newcomer.Name, target, s4)
		}
		if newcomer.proc.exited() {
			t.Fatalf("%s exited while syncing: %v", newcomer.Name, newcomer.proc.err)
		}
		if s, err := newcomer.quickStatus(ctx, time.Second); err == nil {
			s4 = s
			sawCatchingUp = sawCatchingUp || s.Chain.CatchingUp
			if s.Height >= target && !s.Chain.CatchingUp {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	syncTook := time.Since(syncBegan)
	s0, err := founders.nodes[0].api.status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	common := min(s0.Height, s4.Height)
	b0, err := founders.nodes[0].api.block(ctx, common)
	if err != nil {
		t.Fatal(err)
	}
	b4, err := newcomer.api.block(ctx, common)
	if err != nil {
		t.Fatal(err)
	}
	if b0.blockID != b4.blockID || b0.appHash != b4.appHash {
		t.Fatalf("at height %d %s has block %s app hash %s, %s has %s app hash %s", common, founders.nodes[0].Name, b0.blockID, b0.appHash, newcomer.Name, b4.blockID, b4.appHash)
	}
	if err := newcomer.api.proofMatchesHeader(ctx, anchor.did, common-1); err != nil {
		t.Fatalf("%s's own state: %v", newcomer.Name, err)
	}
	synced := blocksyncHeight(ctx, t, newcomer)
	if synced == 0 {
		t.Errorf("%s reached height %d, but its block sync applied no block: it should have caught up by block sync", newcomer.Name, s4.Height)
	}
	t.Logf("%s caught up to height %d (target %d) in %v; catching_up seen: %v; block sync's latest height %d",
		newcomer.Name, s4.Height, target, syncTook.Round(time.Millisecond), sawCatchingUp, synced)
	if len(s4.Chain.Validators) != 4 {
		t.Fatalf("%s reports %d validators before the vote, want 4", newcomer.Name, len(s4.Chain.Validators))
	}

	// 3. The vote: cc-psb proposes, cc-hrss and cc-hsb approve; the third
	// approval carries it.
	vk := cmted25519.PubKey(newcomer.ValidatorKey)
	address := vk.Address().String()
	ac := newcomer.Authority()
	spec := tx.AuthoritySpec{
		ID: ac.ID, NameZH: ac.NameZH, NameEN: ac.NameEN, Key: newcomer.AuthorityKey, Roles: ac.Roles,
		ValidatorKey: newcomer.ValidatorKey, Power: district.TestnetPower, Endpoint: ac.Endpoint,
	}
	if ac.PublicKey != spec.Key.String() || ac.ValidatorKey != base64.StdEncoding.EncodeToString(spec.ValidatorKey) {
		t.Fatalf("Authority() of %s names key %s and validator key %s, the node has %s and %x", newcomer.Name, ac.PublicKey, ac.ValidatorKey, spec.Key, spec.ValidatorKey)
	}
	type step struct {
		by   string
		body tx.Body
		want string // the proposal's status after it
	}
	steps := []step{
		{district.RegistrarID, &tx.Propose{Action: tx.ActionAddAuthority, Authority: spec, Reference: "E2E-JOIN/2026-1"}, ledger.ProposalPending},
		{"cc-hrss", &tx.Vote{Proposal: "p-1"}, ledger.ProposalPending},
		{"cc-hsb", &tx.Vote{Proposal: "p-1"}, ledger.ProposalExecuted},
	}
	var executedAt int64
	for i, st := range steps {
		m := founders.node(st.by)
		h := govern(ctx, t, m, authoritySigner(t, m.Home, st.by), st.body)
		var p ledger.Proposal
		if err := m.api.getJSON(ctx, "/v1/proposals/p-1", &p); err != nil {
			t.Fatal(err)
		}
		if p.Status != st.want || len(p.Approvals) != i+1 || p.Action != tx.ActionAddAuthority || p.Authority.ID != newcomer.AuthorityID {
			t.Fatalf("after %s's %T at height %d, p-1 is %+v; want %s with %d approvals", st.by, st.body, h, p, st.want, i+1)
		}
		executedAt = h
	}
	t.Logf("p-1 executed at height %d: %s joins with validator %s", executedAt, newcomer.AuthorityID, address)

	// 4. A validator update takes effect two blocks after the one that
	// made it: every node, the newcomer too, counts five.
	if err := all.waitAll(ctx, executedAt+2, 20*time.Second, all.nodes...); err != nil {
		t.Fatal(err)
	}
	for _, m := range all.nodes {
		s, err := m.api.status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(s.Chain.Validators, func(v httpapi.Validator) bool { return strings.EqualFold(v.Address, address) })
		if len(s.Chain.Validators) != 5 || i < 0 || s.Chain.Validators[i].Power != district.TestnetPower {
			t.Errorf("%s at height %d reports validators %+v; want 5, with %s at power %d", m.Name, s.Height, s.Chain.Validators, address, district.TestnetPower)
		}
		if s.Authorities != 5 {
			t.Errorf("%s at height %d counts %d authorities, want 5", m.Name, s.Height, s.Authorities)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// 5. One founder stops. Four of five are 40 of 50, more than two
	// thirds; three are not: each block from now on is signed by the
	// newcomer, or there is none. The block after the one the live nodes
	// had reached may still carry a precommit the stopped node sent before
	// it exited; the checks begin with the one after that.
	gone := founders.nodes[rng.IntN(4)]
	if _, err := gone.terminate(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	var live []*member
	for _, m := range all.nodes {
		if m != gone {
			live = append(live, m)
		}
	}
	lc := &consortium{t: t, dir: dir, nodes: live}
	stoppedAt := slices.Max(lc.heights(ctx))
	stopped := time.Now()
	const more = 4
	// +1: a commit is canonical, the same on every node, once the next
	// block carries it.
	if err := lc.waitAll(ctx, stoppedAt+more+2, 45*time.Second, live...); err != nil {
		t.Fatalf("blocks did not go on with %s stopped, at 4 of 5 validators: %v", gone.Name, err)
	}
	goneAddr := cmted25519.PubKey(gone.ValidatorKey).Address().String()
	var rounds []int
	for h := stoppedAt + 2; h <= stoppedAt+more+1; h++ {
		signers, round, err := commitSigners(ctx, newcomer.api, h)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(signers, address) || slices.Contains(signers, goneAddr) || len(signers) != 4 {
			t.Errorf("block %d is signed by %v; want the four live validators, %s among them and not %s", h, signers, address, goneAddr)
		}
		rounds = append(rounds, round)
	}
	t.Logf("with %s stopped at height %d, %d blocks in %v; blocks %d..%d, committed in rounds %v, each signed by %s",
		gone.Name, stoppedAt, more+2, time.Since(stopped).Round(time.Millisecond), stoppedAt+2, stoppedAt+more+1, rounds, newcomer.Name)

	final := slices.Max(lc.heights(ctx))
	if err := lc.waitAll(ctx, final, 20*time.Second, live...); err != nil {
		t.Fatal(err)
	}
	heights := lc.compareChains(ctx, final)
	proofs := lc.compareStates(ctx, anchor.did, anchor.ackHeight, final)
	all.checkLogs()
	t.Logf("blocks 1..%d and %d state proofs agree on the %d live nodes; test took %v", heights, proofs, len(live), time.Since(began).Round(time.Millisecond))
}

// authoritySigner reads authority id's key from a node home.
func authoritySigner(t *testing.T, home, id string) signer {
	t.Helper()
	k, err := key.ReadFile(district.KeyFile(home, id))
	if err != nil {
		t.Fatal(err)
	}
	return signer{key: k, did: didOf(k.Public())}
}

// govern signs body as s on govLane and lands it through m, which must
// commit it with code ok. It returns the height of its block.
func govern(ctx context.Context, t *testing.T, m *member, s signer, body tx.Body) int64 {
	t.Helper()
	seq, err := m.api.nextSeq(ctx, s.did, govLane)
	if err != nil {
		t.Fatal(err)
	}
	x, err := tx.New(consortiumChainID, s.did, govLane, seq, body)
	if err != nil {
		t.Fatal(err)
	}
	x.Sign(s.key)
	raw := x.Encode()
	hash := tx.HashHex(raw)
	code, b, err := m.api.do(ctx, "POST", "/v1/txs", raw)
	switch {
	case err != nil:
		t.Fatalf("%s: %T: %v", m.Name, body, err)
	case code == http.StatusOK:
		var r httpapi.SubmitResponse
		if err := json.Unmarshal(b, &r); err != nil || r.Status != "committed" || !strings.EqualFold(r.Hash, hash) {
			t.Fatalf("%s: %T: 200 %s does not acknowledge %s", m.Name, body, b, hash)
		}
		return r.Height
	case code != http.StatusAccepted:
		t.Fatalf("%s: %T refused: %d %s", m.Name, body, code, b)
	}
	// 202: taken, not committed within the API's wait. Ask for it.
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		res, found, err := m.api.txResult(ctx, hash)
		if err != nil || !found {
			continue
		}
		if res.Code != ledger.OK {
			t.Fatalf("%s: %T committed with code %d (%s): %s", m.Name, body, res.Code, res.Reason, res.Log)
		}
		return res.Height
	}
	t.Fatalf("%s: %T (%s) accepted but not committed within 20 s", m.Name, body, hash)
	return 0
}

// commitSigners returns the addresses (upper-case hex) of the validators
// whose precommits for block h the commit a node serves carries, and the
// round the block was committed in.
func commitSigners(ctx context.Context, a *api, h int64) ([]string, int, error) {
	var r struct {
		Commit struct {
			Round      int `json:"round"`
			Signatures []struct {
				Flag    int    `json:"block_id_flag"`
				Address string `json:"validator_address"`
			} `json:"signatures"`
		} `json:"commit"`
	}
	if err := a.getJSON(ctx, fmt.Sprintf("/v1/blocks/%d/commit", h), &r); err != nil {
		return nil, 0, err
	}
	var out []string
	for _, s := range r.Commit.Signatures {
		if s.Flag == 2 { // BlockIDFlagCommit: a precommit for this block
			out = append(out, strings.ToUpper(s.Address))
		}
	}
	return out, r.Commit.Round, nil
}

// blocksyncHeight is the last height m applied by block sync, from its
// metrics: 0 if it applied none.
func blocksyncHeight(ctx context.Context, t *testing.T, m *member) int64 {
	t.Helper()
	code, b, err := m.api.do(ctx, "GET", "/metrics", nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("%s: GET /metrics: %d %v", m.Name, code, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || !strings.HasPrefix(name, "cometbft_blocksync_latest_block_height") {
			continue
		}
		f, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("%s: metric %q: %v", m.Name, sc.Text(), err)
		}
		return int64(f)
	}
	return 0
}
