package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/imi-city/imi/internal/district"
)

func init() {
	register(&command{
		name:    "testnet",
		summary: "write the node homes of a consortium of authorities on this machine",
		usage:   "--out DIR [--validators N] [--standby N] [--base-port PORT] [--chain-id ID]",
		examples: `  imi testnet --validators 4 --standby 1 --out /tmp/consortium
  imi testnet up --dir /tmp/consortium          # starts every node; Ctrl-C stops them
  imi node --home /tmp/consortium/node0         # or start each one yourself`,
		run: runTestnet,
	})
	register(&command{
		name:    "testnet up",
		summary: "run the nodes of a testnet as child processes until Ctrl-C",
		usage:   "--dir DIR [--nodes node0,node1,...]",
		examples: `  imi testnet up --dir /tmp/consortium
  imi testnet up --dir /tmp/consortium --nodes node4     # a standby node, next to a running network`,
		run: runTestnetUp,
	})
}

func runTestnet(ctx context.Context, e *env, args []string) error {
	c := find("testnet")
	fs := c.flags(e)
	out := fs.String("out", "", "directory for the node homes; must be new or empty (required)")
	validators := fs.Int("validators", 4, "founding authorities, each running a validator")
	standby := fs.Int("standby", 0, "extra authorities with a node home, to join by a vote")
	basePort := fs.Int("base-port", district.DefaultTestnetBasePort, "node i serves HTTP on base+i and P2P on base+100+i, on 127.0.0.1")
	chainID := fs.String("chain-id", district.DefaultTestnetChainID, "network name")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := need("out", *out); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *chainID == "" {
		*chainID = district.DefaultTestnetChainID
	}
	if *validators < 1 || *standby < 0 {
		return fmt.Errorf("%w: --validators must be at least 1 and --standby at least 0", errUsage)
	}
	nodes, err := district.WriteTestnet(*out, district.TestnetOptions{
		Validators: *validators, Standby: *standby, ChainID: *chainID, BasePort: *basePort,
		GenesisTime: time.Now().Truncate(time.Second),
	})
	if err != nil {
		return err
	}
	printTestnet(e.stdout, *out, *chainID, nodes)
	return nil
}

// printTestnet tells the operator what was written and how to use it.
func printTestnet(w io.Writer, dir, chainID string, nodes []district.TestnetNode) {
	var founders, standby []district.TestnetNode
	for _, n := range nodes {
		if n.Validator {
			founders = append(founders, n)
		} else {
			standby = append(standby, n)
		}
	}
	fmt.Fprintf(w, "Wrote the homes of %d founding and %d standby authority nodes in %s (chain %s):\n\n", len(founders), len(standby), dir, chainID)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "NODE\tAUTHORITY\tHTTP\tP2P\tROLE\n")
	var urls []string
	for _, n := range nodes {
		role := "validator"
		if !n.Validator {
			role = "standby (not in the genesis)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Name, n.AuthorityID, "http://"+n.HTTP, n.P2P, role)
		urls = append(urls, "http://"+n.HTTP)
	}
	tw.Flush()
	fmt.Fprintf(w, `
Each home holds only its own authority's key (keys/), its CometBFT keys and
the same genesis. Start every node, and stop them all with Ctrl-C:
  imi testnet up --dir %s
or each one in its own terminal:
  imi node --home %s
Watch the network (height, last block, peers, validators, catching up):
  imi status --each --node %s
`, sh(dir), sh(founders[0].Home), strings.Join(urls, ","))
	// Standby authorities join in order; each one that joined is one more
	// authority whose approval the next one needs.
	voters := slices.Clone(founders)
	for i, s := range standby {
		current := len(founders) + i
		needed := 2*current/3 + 1 // more than two-thirds: 3a > 2n
		proposer := voters[0]
		a := s.Authority()
		fmt.Fprintf(w, `
To make %s a validator (after the chain has started):
  1. Start its node; it catches up by block sync and follows the chain:
       imi node --home %s
     On a long chain, state-sync instead: in its imi.toml [state_sync] set
     enable = true and trust_height / trust_hash from a running node
     (imi status --json: chain.latest_height, chain.latest_block_hash).
  2. %s proposes it (the proposal is its first approval):
       imi authority propose --as %s --home %s --node http://%s \
         --action add_authority --id %s --name-zh %s --name-en %s \
         --public-key %s --roles %s \
         --validator-key %s --power %d --endpoint %s
`, s.AuthorityID, sh(s.Home), proposer.AuthorityID, proposer.AuthorityID, sh(proposer.Home), proposer.HTTP,
			a.ID, sh(a.NameZH), sh(a.NameEN), a.PublicKey, strings.Join(a.Roles, ","), a.ValidatorKey, a.Power, sh(a.Endpoint))
		if needed == 1 {
			fmt.Fprintf(w, "     It is the only authority: the proposal is carried out at once.\n")
		} else {
			fmt.Fprintf(w, "  3. %d more approve (%d of %d authorities, more than two-thirds); p-%d is the id\n     that authority propose printed:\n", needed-1, needed, current, i+1)
			for _, v := range voters[1:needed] {
				fmt.Fprintf(w, "       imi authority vote --as %s --home %s --node http://%s --proposal p-%d\n", v.AuthorityID, sh(v.Home), v.HTTP, i+1)
			}
		}
		fmt.Fprintf(w, "     imi status --node http://%s then lists %d validators.\n", s.HTTP, current+1)
		voters = append(voters, s)
	}
}

// sh quotes s for a POSIX shell if it needs quoting.
func sh(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("-_./:@,=+", r)
	}) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Timing of testnet up, variables for tests.
var (
	// stopGrace is how long a node has to stop after SIGTERM before it is
	// killed.
	stopGrace = 15 * time.Second
	// readyPoll is how often a starting node's /v1/status is asked.
	readyPoll = 500 * time.Millisecond
)

func runTestnetUp(ctx context.Context, e *env, args []string) error {
	c := find("testnet up")
	fs := c.flags(e)
	dir := fs.String("dir", "", "the directory imi testnet wrote (required)")
	only := fs.String("nodes", "", "comma-separated node names to start (default: all)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := need("dir", *dir); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	all, err := district.ReadTestnet(*dir)
	if err != nil {
		return err
	}
	nodes := all
	if *only != "" {
		nodes = nil
		for _, name := range strings.Split(*only, ",") {
			name = strings.TrimSpace(name)
			i := slices.IndexFunc(all, func(n district.TestnetNode) bool { return n.Name == name })
			if i < 0 {
				return fmt.Errorf("%w: %s has no node %q", errUsage, *dir, name)
			}
			if !slices.ContainsFunc(nodes, func(n district.TestnetNode) bool { return n.Name == name }) {
				nodes = append(nodes, all[i])
			}
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("couldn't find the imi executable: %w", err)
	}
	return upTestnet(ctx, e, exe, nodes)
}

// child is one node process of testnet up.
type child struct {
	n    district.TestnetNode
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done

	reported bool // its exit was reported
}

// upTestnet runs `exe node --home` for each node until ctx ends, then stops
// them: SIGTERM, and SIGKILL for those still running stopGrace later.
func upTestnet(ctx context.Context, e *env, exe string, nodes []district.TestnetNode) error {
	var mu sync.Mutex // one line at a time on stderr
	width := 0
	for _, n := range nodes {
		width = max(width, len(n.Name))
	}
	var children []*child
	exited := make(chan *child, len(nodes))
	for _, n := range nodes {
		ch := &child{n: n, done: make(chan struct{})}
		ch.cmd = exec.Command(exe, "node", "--home", n.Home)
		// A Ctrl-C in the terminal reaches the children too (they are in
		// its process group) and they start stopping by themselves; the
		// SIGTERM that follows is for when only this process is told.
		stdout, err := ch.cmd.StdoutPipe()
		if err != nil {
			return errors.Join(err, stopChildren(children))
		}
		stderr, err := ch.cmd.StderrPipe()
		if err != nil {
			return errors.Join(err, stopChildren(children))
		}
		if err := ch.cmd.Start(); err != nil {
			return errors.Join(fmt.Errorf("couldn't start %s: %w", n.Name, err), stopChildren(children))
		}
		prefix := fmt.Sprintf("%-*s | ", width, n.Name)
		var output sync.WaitGroup
		for _, r := range []io.Reader{stdout, stderr} {
			output.Go(func() { prefixLines(&mu, e.stderr, prefix, r) })
		}
		go func() {
			// Wait closes the pipes, so only once they are read to the end.
			output.Wait()
			ch.err = ch.cmd.Wait()
			close(ch.done)
			exited <- ch
		}()
		children = append(children, ch)
	}

	readyCtx, stopPolling := context.WithCancel(ctx)
	defer stopPolling()
	ready := make(chan district.TestnetNode, len(nodes))
	for _, ch := range children {
		go func() {
			if waitAPI(readyCtx, ch) {
				ready <- ch.n
			}
		}()
	}
	fmt.Fprintf(e.stdout, "Starting %d nodes; Ctrl-C stops them all.\n", len(nodes))
	running, up := len(children), 0
	for running > 0 {
		select {
		case n := <-ready:
			up++
			role := "validator"
			if !n.Validator {
				role = "standby"
			}
			fmt.Fprintf(e.stdout, "%-*s ready  http://%s  (%s, %s)\n", width, n.Name, n.HTTP, n.AuthorityID, role)
			if up == len(nodes) {
				fmt.Fprintf(e.stdout, "All %d nodes are up.\n", up)
			}
		case ch := <-exited:
			running--
			ch.reported = true
			mu.Lock()
			fmt.Fprintf(e.stderr, "%s exited: %v\n", ch.n.Name, exitReason(ch.err))
			mu.Unlock()
		case <-ctx.Done():
			stopPolling()
			fmt.Fprintf(e.stdout, "Stopping %d nodes.\n", running)
			err := stopChildren(children)
			for _, ch := range children {
				if !ch.reported {
					fmt.Fprintf(e.stderr, "%s stopped: %s\n", ch.n.Name, exitReason(ch.err))
				}
			}
			return err
		}
	}
	return errors.New("every node exited")
}

// waitAPI polls ch's /v1/status until it answers 200 OK, which it does once
// the node has a committed block. It gives up when the process exits or
// ctx ends.
func waitAPI(ctx context.Context, ch *child) bool {
	url := "http://" + ch.n.HTTP + "/v1/status"
	for {
		req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
		if err != nil {
			return false
		}
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return true
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-ch.done:
			return false
		case <-time.After(readyPoll):
		}
	}
}

// stopChildren sends SIGTERM to every running child and waits for them;
// those still running after stopGrace get SIGKILL.
func stopChildren(children []*child) error {
	for _, ch := range children {
		select {
		case <-ch.done:
		default:
			_ = ch.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	grace := time.NewTimer(stopGrace)
	defer grace.Stop()
	expired := false
	var killed []string
	for _, ch := range children {
		if !expired {
			select {
			case <-ch.done:
				continue
			case <-grace.C:
				expired = true
			}
		}
		select {
		case <-ch.done:
			continue
		default:
		}
		_ = ch.cmd.Process.Kill()
		<-ch.done
		killed = append(killed, ch.n.Name)
	}
	if len(killed) > 0 {
		return fmt.Errorf("killed %s: still running %v after SIGTERM", strings.Join(killed, ", "), stopGrace)
	}
	return nil
}

// exitReason describes how a child ended.
func exitReason(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// prefixLines copies r to w line by line, each line prefixed, holding mu for
// each line so that lines of different nodes don't interleave.
func prefixLines(mu *sync.Mutex, w io.Writer, prefix string, r io.Reader) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			if !strings.HasSuffix(line, "\n") {
				line += "\n"
			}
			mu.Lock()
			io.WriteString(w, prefix+line)
			mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}
