package node

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"

	cmtjson "github.com/cometbft/cometbft/libs/json"
	cmtproto "github.com/cometbft/cometbft/proto/tendermint/types"
	cmttypes "github.com/cometbft/cometbft/types"
)

// signedBlock builds block 2 of chain testChainID, signed by a fresh
// single-validator set, without running a node.
func signedBlock(t testing.TB) (Block, *cmttypes.ValidatorSet) {
	t.Helper()
	pv := cmttypes.NewMockPV()
	pub, err := pv.GetPubKey()
	if err != nil {
		t.Fatal(err)
	}
	vals := cmttypes.NewValidatorSet([]*cmttypes.Validator{cmttypes.NewValidator(pub, 10)})

	lastID := cmttypes.BlockID{
		Hash:          bytes.Repeat([]byte{1}, 32),
		PartSetHeader: cmttypes.PartSetHeader{Total: 1, Hash: bytes.Repeat([]byte{2}, 32)},
	}
	block := cmttypes.MakeBlock(2, []cmttypes.Tx{cmttypes.Tx("city=imi")}, &cmttypes.Commit{
		Height:     1,
		BlockID:    lastID,
		Signatures: []cmttypes.CommitSig{cmttypes.NewCommitSigAbsent()},
	}, nil)
	block.Header.Populate(block.Header.Version, testChainID, testGenesisTime, lastID,
		vals.Hash(), vals.Hash(), cmttypes.DefaultConsensusParams().Hash(),
		bytes.Repeat([]byte{3}, 32), nil, pub.Address())
	parts, err := block.MakePartSet(cmttypes.BlockPartSizeBytes)
	if err != nil {
		t.Fatal(err)
	}
	id := cmttypes.BlockID{Hash: block.Hash(), PartSetHeader: parts.Header()}
	voteSet := cmttypes.NewVoteSet(testChainID, 2, 0, cmtproto.PrecommitType, vals)
	ext, err := cmttypes.MakeExtCommit(id, 2, 0, voteSet, []cmttypes.PrivValidator{pv}, testGenesisTime.Add(time.Second), false)
	if err != nil {
		t.Fatal(err)
	}
	return Block{Header: block.Header, Commit: ext.ToCommit(), Canonical: true}, vals
}

func TestVerify(t *testing.T) {
	b, vals := signedBlock(t)
	if err := b.Verify(testChainID, vals); err != nil {
		t.Fatalf("valid block: %v", err)
	}

	// Every change below must be an error, not a panic: blocks and
	// validator sets may come from an untrusted node.
	tests := []struct {
		name   string
		change func(*Block, *cmttypes.ValidatorSet)
	}{
		{"other chain", func(b *Block, _ *cmttypes.ValidatorSet) { b.Header.ChainID = "imi-other" }},
		{"app hash", func(b *Block, _ *cmttypes.ValidatorSet) { b.Header.AppHash = bytes.Repeat([]byte{9}, 32) }},
		{"height", func(b *Block, _ *cmttypes.ValidatorSet) { b.Header.Height++ }},
		{"time", func(b *Block, _ *cmttypes.ValidatorSet) { b.Header.Time = b.Header.Time.Add(time.Second) }},
		{"no commit", func(b *Block, _ *cmttypes.ValidatorSet) { b.Commit = nil }},
		{"no signatures", func(b *Block, _ *cmttypes.ValidatorSet) { b.Commit.Signatures = nil }},
		{"bad signature", func(b *Block, _ *cmttypes.ValidatorSet) { b.Commit.Signatures[0].Signature[0] ^= 1 }},
		{"commit for other block", func(b *Block, _ *cmttypes.ValidatorSet) { b.Commit.BlockID.Hash = bytes.Repeat([]byte{7}, 32) }},
		{"other power", func(_ *Block, v *cmttypes.ValidatorSet) { v.Validators[0].VotingPower++ }},
		{"no validators", func(_ *Block, v *cmttypes.ValidatorSet) { v.Validators = nil }},
		{"validator without key", func(_ *Block, v *cmttypes.ValidatorSet) { v.Validators[0].PubKey = nil }},
		{"huge power", func(_ *Block, v *cmttypes.ValidatorSet) { v.Validators[0].VotingPower = math.MaxInt64 }},
		{"negative power", func(_ *Block, v *cmttypes.ValidatorSet) { v.Validators[0].VotingPower = -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, vals := signedBlock(t)
			tt.change(&b, vals)
			if err := b.Verify(testChainID, vals); err == nil {
				t.Error("Verify succeeded")
			}
		})
	}
}

// FuzzVerify feeds Verify blocks and validator sets decoded from arbitrary
// JSON, as a client does with a node's answer.
func FuzzVerify(f *testing.F) {
	b, vals := signedBlock(f)
	enc := func(v any) []byte {
		data, err := cmtjson.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		return data
	}
	header, commit, valSet := enc(b.Header), enc(b.Commit), enc(vals)
	f.Add(header, commit, valSet)
	f.Add(header, commit, []byte(`{"validators":[{"address":"","pub_key":null,"voting_power":"1"}]}`))
	f.Add(header, []byte(`{"height":"2","signatures":[{"block_id_flag":2}]}`), valSet)

	f.Fuzz(func(t *testing.T, header, commit, valSet []byte) {
		var b Block
		var vals cmttypes.ValidatorSet
		b.Commit = new(cmttypes.Commit)
		if cmtjson.Unmarshal(header, &b.Header) != nil ||
			cmtjson.Unmarshal(commit, b.Commit) != nil ||
			cmtjson.Unmarshal(valSet, &vals) != nil {
			return
		}
		if err := b.Verify(testChainID, &vals); err != nil {
			return
		}
		if !bytes.Equal(b.Header.Hash(), b.Commit.BlockID.Hash) || !bytes.Equal(b.Header.ValidatorsHash, vals.Hash()) {
			t.Fatalf("Verify accepted an inconsistent block: %s", mustJSON(b))
		}
	})
}

func mustJSON(v any) []byte {
	data, _ := json.Marshal(v)
	return data
}
