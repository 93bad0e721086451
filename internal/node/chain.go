package node

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	cmted25519 "github.com/cometbft/cometbft/crypto/ed25519"
	cmttypes "github.com/cometbft/cometbft/types"
)

// Status is a snapshot of the node's view of the chain.
type Status struct {
	ChainID string
	// NodeID is the node's P2P identity, as used in PersistentPeers.
	NodeID string

	// LatestHeight is the last block the application has committed; zero
	// before the first block.
	LatestHeight int64
	// LatestBlockHash is the hash of that block's header.
	LatestBlockHash []byte
	// LatestAppHash is the app hash in that block's header, which is the
	// application's state after the block before it (as in CometBFT's
	// /status). The state after block H is in the header of block H+1.
	LatestAppHash []byte
	// LatestBlockTime is that block's time, agreed by the validators.
	LatestBlockTime time.Time

	// CatchingUp is true while the node is syncing blocks from peers
	// rather than taking part in consensus.
	CatchingUp bool
	// Peers is the number of connected peers.
	Peers int
	// Validators is the validator set for the next block.
	Validators []Validator
}

// Validator is one member of a validator set.
type Validator struct {
	// Address is CometBFT's 20-byte address of PubKey.
	Address []byte
	PubKey  ed25519.PublicKey
	Power   int64
}

// Status returns the node's view of the chain. After Stop, only ChainID and
// NodeID are set.
func (n *Node) Status() Status {
	st := Status{ChainID: n.chainID, NodeID: n.nodeID}
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.stopped {
		return st
	}
	// Failures below leave fields zero: they mean a damaged store, which
	// CometBFT itself would panic over soon enough.
	state, err := n.state.Load()
	if err != nil {
		n.logger.Error("couldn't load consensus state", "err", err)
		return st
	}
	st.LatestHeight = state.LastBlockHeight
	if st.LatestHeight > 0 {
		if meta := n.comet.BlockStore().LoadBlockMeta(st.LatestHeight); meta != nil {
			st.LatestBlockHash = bytes.Clone(meta.BlockID.Hash)
			st.LatestAppHash = bytes.Clone(meta.Header.AppHash)
			st.LatestBlockTime = meta.Header.Time
		}
	}
	st.CatchingUp = n.comet.ConsensusReactor().WaitSync()
	st.Peers = n.comet.Switch().Peers().Size()
	st.Validators = validators(state.Validators)
	return st
}

func validators(vs *cmttypes.ValidatorSet) []Validator {
	if vs == nil {
		return nil
	}
	out := make([]Validator, 0, len(vs.Validators))
	for _, v := range vs.Validators {
		val := Validator{Address: bytes.Clone(v.Address), Power: v.VotingPower}
		if pk, ok := v.PubKey.(cmted25519.PubKey); ok {
			val.PubKey = ed25519.PublicKey(bytes.Clone(pk))
		}
		out = append(out, val)
	}
	return out
}

// Block is a block's header and the commit that signs it. Header carries
// the height, time, app hash (state after the previous block) and
// LastBlockID, which links it to its parent.
type Block struct {
	Header cmttypes.Header
	// Commit holds the precommit signatures of more than two thirds of the
	// voting power for Header.Hash().
	Commit *cmttypes.Commit
	// Canonical tells whether Commit is the one recorded in the next block,
	// which all nodes agree on. For the latest block it is false: Commit is
	// the set of signatures this node saw, equally valid but possibly
	// different from other nodes'.
	Canonical bool
}

// Block returns block height's header and commit. It fails with an error
// wrapping ErrHeightUnavailable for heights the node doesn't have.
func (n *Node) Block(height int64) (Block, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.stopped {
		return Block{}, ErrStopped
	}
	bs := n.comet.BlockStore()
	latest := bs.Height()
	if height < 1 || height < bs.Base() || height > latest {
		return Block{}, fmt.Errorf("couldn't load block %d, have %d to %d: %w", height, bs.Base(), latest, ErrHeightUnavailable)
	}
	meta := bs.LoadBlockMeta(height)
	if meta == nil {
		return Block{}, fmt.Errorf("couldn't load block %d: %w", height, ErrHeightUnavailable)
	}
	b := Block{Header: meta.Header, Canonical: height < latest}
	if b.Canonical {
		b.Commit = bs.LoadBlockCommit(height)
	} else {
		b.Commit = bs.LoadSeenCommit(height)
	}
	if b.Commit == nil {
		return Block{}, fmt.Errorf("couldn't load commit for block %d: %w", height, ErrHeightUnavailable)
	}
	return b, nil
}

// ValidatorSet returns the validator set that signs block height's commit.
// It is known up to one height past the latest block. It fails with an
// error wrapping ErrHeightUnavailable for other heights.
func (n *Node) ValidatorSet(height int64) (*cmttypes.ValidatorSet, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.stopped {
		return nil, ErrStopped
	}
	latest := n.comet.BlockStore().Height()
	if height < 1 || height > latest+1 {
		return nil, fmt.Errorf("couldn't load validators for height %d, latest is %d: %w", height, latest, ErrHeightUnavailable)
	}
	vals, err := n.state.LoadValidators(height)
	if err != nil {
		return nil, fmt.Errorf("couldn't load validators for height %d: %w: %w", height, ErrHeightUnavailable, err)
	}
	return vals, nil
}

// Verify checks that b is a block of chain chainID signed by vals, the
// validator set at b's height: that vals is the set the header names, and
// that the commit is for this header and carries valid signatures of more
// than two thirds of vals' voting power. A light client that trusts vals
// may then trust everything in b.Header, notably its AppHash.
func (b Block) Verify(chainID string, vals *cmttypes.ValidatorSet) error {
	if b.Commit == nil {
		return errors.New("block has no commit")
	}
	if vals == nil || vals.IsNilOrEmpty() {
		return errors.New("no validators to verify against")
	}
	// b and vals may come from an untrusted node, and CometBFT panics on
	// malformed keys and excessive total power, so check those first. IMI
	// validators have ed25519 keys only, as WriteGenesis ensures.
	var total int64
	for i, v := range vals.Validators {
		if v == nil {
			return fmt.Errorf("invalid validator %d: missing", i)
		}
		if pk, ok := v.PubKey.(cmted25519.PubKey); !ok || len(pk) != cmted25519.PubKeySize {
			return fmt.Errorf("invalid validator %d: want a %d-byte ed25519 key", i, cmted25519.PubKeySize)
		}
		if err := v.ValidateBasic(); err != nil {
			return fmt.Errorf("invalid validator %d: %w", i, err)
		}
		if v.VotingPower > cmttypes.MaxTotalVotingPower-total {
			return errors.New("validators' total voting power out of range")
		}
		total += v.VotingPower
	}
	if b.Header.ChainID != chainID {
		return fmt.Errorf("block is for chain %q, want %q", b.Header.ChainID, chainID)
	}
	if err := b.Header.ValidateBasic(); err != nil {
		return fmt.Errorf("invalid header: %w", err)
	}
	if err := b.Commit.ValidateBasic(); err != nil {
		return fmt.Errorf("invalid commit: %w", err)
	}
	if !bytes.Equal(b.Header.ValidatorsHash, vals.Hash()) {
		return fmt.Errorf("validator set %X is not the header's %X", vals.Hash(), b.Header.ValidatorsHash)
	}
	if hash := b.Header.Hash(); !bytes.Equal(hash, b.Commit.BlockID.Hash) {
		return fmt.Errorf("commit signs block %X, header hashes to %X", b.Commit.BlockID.Hash, hash)
	}
	if err := vals.VerifyCommitLight(chainID, b.Commit.BlockID, b.Header.Height, b.Commit); err != nil {
		return fmt.Errorf("couldn't verify commit: %w", err)
	}
	return nil
}
