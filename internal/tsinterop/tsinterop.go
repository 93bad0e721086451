// Package tsinterop is used by tests to run the independent implementation:
// the OpenWallet Foundation TypeScript packages @sd-jwt/sd-jwt-vc and
// @sd-jwt/jwt-status-list (pinned at 0.19.0 in interop/sdjwt-ts), driven
// through small Node scripts that each read one JSON request on stdin and
// write one JSON answer on stdout.
//
// Node.js and npm must be on PATH. Their absence is an error, never a skip:
// an interop test that cannot run must fail.
package tsinterop

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Dir finds interop/sdjwt-ts from the module root: it walks up from the
// working directory to the directory holding go.mod.
func Dir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, "interop", "sdjwt-ts"), nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("tsinterop: no go.mod above %s", wd)
		}
		d = parent
	}
}

var (
	ensureMu sync.Mutex
	ensured  bool
)

// Ensure makes node_modules ready: it runs `npm ci --no-audit --no-fund` in
// Dir when node_modules is missing or older than package-lock.json. A lock
// file (flock on Dir/.ensure.lock) serialises this across the test binaries
// that go test runs in parallel. It fails with a clear error when node or npm
// is not on PATH.
func Ensure(ctx context.Context) error {
	ensureMu.Lock()
	defer ensureMu.Unlock()
	if ensured {
		return nil
	}
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("tsinterop: %s is not on PATH; the SD-JWT interop tests need Node.js (v20) and npm: %w", tool, err)
		}
	}
	dir, err := Dir()
	if err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".ensure.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("tsinterop: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("tsinterop: lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	stale, err := stale(dir)
	if err != nil {
		return err
	}
	if stale {
		cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("tsinterop: npm ci in %s: %w\n%s", dir, err, out)
		}
	}
	ensured = true
	return nil
}

// stale reports whether node_modules is missing or older than
// package-lock.json. npm writes node_modules/.package-lock.json last on every
// install, so its time stamps the install.
func stale(dir string) (bool, error) {
	lockInfo, err := os.Stat(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return false, fmt.Errorf("tsinterop: %w", err)
	}
	stamp, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json"))
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("tsinterop: %w", err)
	}
	return stamp.ModTime().Before(lockInfo.ModTime()), nil
}

// Run runs script (e.g. "verify.mjs") in Dir with req marshalled as JSON on
// stdin and decodes its JSON answer into resp. It calls Ensure first. A
// script exits non-zero only for a harness failure; its stderr is then part of
// the error. A verification failure is an answer ({"ok":false,...}), not an
// error.
func Run(ctx context.Context, script string, req, resp any) error {
	if err := Ensure(ctx); err != nil {
		return err
	}
	dir, err := Dir()
	if err != nil {
		return err
	}
	in, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("tsinterop: %s request: %w", script, err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("tsinterop: node %s: %w\n%s", script, err, strings.TrimSpace(stderr.String()))
	}
	if err := json.Unmarshal(stdout.Bytes(), resp); err != nil {
		return fmt.Errorf("tsinterop: node %s answered %q: %w\n%s", script, stdout.String(), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// JWK is the public OKP Ed25519 JWK of pub.
func JWK(pub ed25519.PublicKey) map[string]any {
	return map[string]any{"kty": "OKP", "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(pub)}
}

// PrivateJWK is the private OKP Ed25519 JWK of priv: JWK plus "d", the seed.
func PrivateJWK(priv ed25519.PrivateKey) map[string]any {
	m := JWK(priv.Public().(ed25519.PublicKey))
	m["d"] = base64.RawURLEncoding.EncodeToString(priv.Seed())
	return m
}

// answer is the part every script's answer shares.
type answer struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

func (a answer) err(script string) error {
	if a.OK {
		return nil
	}
	return fmt.Errorf("tsinterop: %s: %s", script, a.Error)
}

// VerifyRequest asks verify.mjs to verify one presentation.
type VerifyRequest struct {
	SDJWT             string         `json:"sdjwt"`
	IssuerJWK         map[string]any `json:"issuerJwk"`
	RequireKeyBinding bool           `json:"requireKeyBinding"`
	Aud               string         `json:"aud,omitempty"`
	Nonce             string         `json:"nonce,omitempty"`
	RequiredClaims    []string       `json:"requiredClaims,omitempty"`
	// StatusListToken is handed to the library's statusListFetcher for
	// status.status_list.uri; empty means status is not checked.
	StatusListToken string `json:"statusListToken,omitempty"`
	// StatusListIssuerJWK verifies StatusListToken; nil means IssuerJWK.
	StatusListIssuerJWK map[string]any `json:"statusListIssuerJwk,omitempty"`
	// Now is the verifier's clock in Unix seconds; 0 means the real clock.
	Now int64 `json:"now,omitempty"`
}

// VerifyResult is verify.mjs's answer. OK false with Error is a rejected
// presentation.
type VerifyResult struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Claims is the processed payload: plain claims plus the disclosed ones.
	Claims map[string]any `json:"claims,omitempty"`
	// Status is the value read from the status list at status_list.idx (the
	// library's statusValidator reports it, it does not judge it); nil when
	// the credential has no status or no StatusListToken was given.
	Status *int `json:"status"`
}

// Verify verifies a presentation with SDJwtVcInstance.verify. A rejection is
// VerifyResult.OK false, not an error.
func Verify(ctx context.Context, req VerifyRequest) (VerifyResult, error) {
	var res VerifyResult
	err := Run(ctx, "verify.mjs", req, &res)
	return res, err
}

// PresentRequest asks present.mjs for a presentation with key binding.
type PresentRequest struct {
	SDJWT            string         `json:"sdjwt"`
	HolderPrivateJWK map[string]any `json:"holderPrivateJwk"`
	Disclose         []string       `json:"disclose"`
	Aud              string         `json:"aud"`
	Nonce            string         `json:"nonce"`
	IAT              int64          `json:"iat,omitempty"`
}

// Present makes a presentation of an issued credential with
// SDJwtVcInstance.present, disclosing the named top-level claims and signing
// a KB-JWT {iat, aud, nonce, sd_hash} with the holder key.
func Present(ctx context.Context, req PresentRequest) (string, error) {
	var res struct {
		answer
		Presentation string `json:"presentation"`
	}
	if err := Run(ctx, "present.mjs", req, &res); err != nil {
		return "", err
	}
	return res.Presentation, res.err("present.mjs")
}

// IssueRequest asks issue.mjs for a credential (typ dc+sd-jwt, EdDSA).
type IssueRequest struct {
	IssuerPrivateJWK map[string]any `json:"issuerPrivateJwk"`
	Iss              string         `json:"iss"`
	Kid              string         `json:"kid,omitempty"`
	Vct              string         `json:"vct"`
	HolderJWK        map[string]any `json:"holderJwk"`
	Claims           map[string]any `json:"claims"`
	// Disclosable names the top-level claims made selectively disclosable.
	Disclosable []string `json:"disclosable"`
	IAT         int64    `json:"iat,omitempty"`
	Exp         int64    `json:"exp,omitempty"`
	// StatusURI empty means no status claim.
	StatusURI string `json:"statusUri,omitempty"`
	StatusIdx int    `json:"statusIdx"`
}

// Issue issues a credential with SDJwtVcInstance.issue and returns it in
// compact form (ending in "~").
func Issue(ctx context.Context, req IssueRequest) (string, error) {
	var res struct {
		answer
		SDJWT string `json:"sdjwt"`
	}
	if err := Run(ctx, "issue.mjs", req, &res); err != nil {
		return "", err
	}
	return res.SDJWT, res.err("issue.mjs")
}

// StatusRequest asks status.mjs for one entry of a status list token.
type StatusRequest struct {
	Token     string         `json:"token"`
	IssuerJWK map[string]any `json:"issuerJwk"`
	Idx       int            `json:"idx"`
	// Now, when non-zero, also checks the token's iat and exp.
	Now int64 `json:"now,omitempty"`
}

// StatusResult is status.mjs's answer. OK false with Error is a rejected
// token (signature, typ, time) or an index out of range.
type StatusResult struct {
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	Status int    `json:"status"`
	Bits   int    `json:"bits"`
}

// Status reads entry Idx of a status list token with
// @sd-jwt/jwt-status-list after checking its signature with Node crypto. A
// rejection is StatusResult.OK false, not an error.
func Status(ctx context.Context, req StatusRequest) (StatusResult, error) {
	var res StatusResult
	err := Run(ctx, "status.mjs", req, &res)
	return res, err
}

// BenchRequest asks bench.mjs to verify Presentations (key binding required)
// round-robin for Seconds of wall time in one Node process.
type BenchRequest struct {
	Presentations []string       `json:"presentations"`
	IssuerJWK     map[string]any `json:"issuerJwk"`
	Aud           string         `json:"aud"`
	Nonce         string         `json:"nonce"`
	Now           int64          `json:"now,omitempty"`
	Seconds       float64        `json:"seconds"`
	// StatusListToken, when set, is checked on every verification as in
	// VerifyRequest.
	StatusListToken     string         `json:"statusListToken,omitempty"`
	StatusListIssuerJWK map[string]any `json:"statusListIssuerJwk,omitempty"`
}

// BenchResult is bench.mjs's answer; one core by nature.
type BenchResult struct {
	Verified  int     `json:"verified"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"perSecond"`
}

// Bench runs bench.mjs. Any presentation that fails to verify is an error.
func Bench(ctx context.Context, req BenchRequest) (BenchResult, error) {
	var res struct {
		answer
		BenchResult
	}
	if err := Run(ctx, "bench.mjs", req, &res); err != nil {
		return BenchResult{}, err
	}
	return res.BenchResult, res.err("bench.mjs")
}
