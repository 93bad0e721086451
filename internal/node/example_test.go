package node_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/cometbft/cometbft/abci/example/kvstore"
	abcitypes "github.com/cometbft/cometbft/abci/types"

	"github.com/imi-city/imi/internal/node"
)

// A single-validator chain: create keys, write the genesis naming this node
// as validator, start, submit a transaction and read it back once committed.
func Example() {
	home, err := os.MkdirTemp("", "imi-node-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(home)

	cfg := node.Config{
		Home:      home,
		ChainID:   "imi-example",
		P2PListen: "tcp://127.0.0.1:0", // any free port
	}
	validatorKey, _, err := node.EnsureKeys(cfg)
	if err != nil {
		log.Fatal(err)
	}
	err = node.WriteGenesis(cfg, node.Genesis{
		GenesisTime: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		Validators:  []node.GenesisValidator{{Name: "city hall", PubKey: validatorKey, Power: 10}},
	})
	if err != nil {
		log.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	n, err := node.Start(ctx, cfg, kvstore.NewInMemoryApplication(), slog.New(slog.DiscardHandler))
	if err != nil {
		log.Fatal(err)
	}
	defer n.Stop()

	res, err := n.CheckTx(ctx, []byte("city=imi"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("CheckTx code:", res.Code)

	// The transaction is in the block after the current one at the latest.
	if err := n.WaitForHeight(ctx, n.Status().LatestHeight+2); err != nil {
		log.Fatal(err)
	}
	q, err := n.Query(ctx, &abcitypes.RequestQuery{Data: []byte("city")})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("city = %s\n", q.Value)
	// Output:
	// CheckTx code: 0
	// city = imi
}
