package district

import (
	"encoding/json"
	"fmt"

	cmtjson "github.com/cometbft/cometbft/libs/json"
	cmttypes "github.com/cometbft/cometbft/types"

	"github.com/imi-city/imi/internal/node"
)

// VerifiedAppHash checks the signed block a node served for chainID and
// returns the app hash its header commits to: the state after the block
// before it. The validator set is taken from the evidence and must be the
// one the header names; a client that pins the validator set does better.
func VerifiedAppHash(chainID string, evidence []byte) (height int64, appHash []byte, err error) {
	var raw SignedBlock
	if err := json.Unmarshal(evidence, &raw); err != nil {
		return 0, nil, fmt.Errorf("couldn't read signed block: %w", err)
	}
	var b node.Block
	var vals cmttypes.ValidatorSet
	if err := cmtjson.Unmarshal(raw.Header, &b.Header); err != nil {
		return 0, nil, fmt.Errorf("couldn't read header: %w", err)
	}
	b.Commit = new(cmttypes.Commit)
	if err := cmtjson.Unmarshal(raw.Commit, b.Commit); err != nil {
		return 0, nil, fmt.Errorf("couldn't read commit: %w", err)
	}
	if err := cmtjson.Unmarshal(raw.Validators, &vals); err != nil {
		return 0, nil, fmt.Errorf("couldn't read validators: %w", err)
	}
	if err := b.Verify(chainID, &vals); err != nil {
		return 0, nil, err
	}
	return b.Header.Height, b.Header.AppHash, nil
}
