package did

import (
	"encoding/base64"
	"time"

	"github.com/imi-city/imi/internal/key"
)

// Contexts of a DID document: DID Core and the JSON Web Key 2020 suite that
// describes publicKeyJwk.
var contexts = []string{"https://www.w3.org/ns/did/v1", "https://w3id.org/security/suites/jws-2020/v1"}

// JWK is an Ed25519 public key as an RFC 8037 OKP JSON Web Key.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
}

// NewJWK converts k.
func NewJWK(k key.Public) JWK {
	return JWK{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(k.Bytes())}
}

// VerificationMethod is one key of a DID document.
type VerificationMethod struct {
	ID           string `json:"id"`
	Type         string `json:"type"`
	Controller   string `json:"controller"`
	PublicKeyJwk JWK    `json:"publicKeyJwk"`
}

// Service is a service endpoint of a DID document (an authority's node).
type Service struct {
	ID              string `json:"id"`
	Type            string `json:"type"`
	ServiceEndpoint string `json:"serviceEndpoint"`
}

// Document is a W3C DID Core 1.0 document in its JSON-LD representation.
type Document struct {
	Context            []string             `json:"@context"`
	ID                 string               `json:"id"`
	AlsoKnownAs        []string             `json:"alsoKnownAs,omitempty"`
	VerificationMethod []VerificationMethod `json:"verificationMethod,omitempty"`
	Authentication     []string             `json:"authentication,omitempty"`
	AssertionMethod    []string             `json:"assertionMethod,omitempty"`
	Service            []Service            `json:"service,omitempty"`
}

// NewDocument builds the document of subject d whose current key is k.
// keyVersion numbers the key (1 for the first, +1 on each rotation or
// recovery) so that a verifier can tell keys apart in the history. A
// deactivated DID has no verification methods: nothing it signs is valid.
func NewDocument(d DID, k key.Public, keyVersion uint64, deactivated bool) Document {
	doc := Document{Context: contexts, ID: d.String()}
	if deactivated {
		return doc
	}
	kid := d.String() + "#key-" + uitoa(keyVersion)
	doc.VerificationMethod = []VerificationMethod{{ID: kid, Type: "JsonWebKey2020", Controller: d.String(), PublicKeyJwk: NewJWK(k)}}
	doc.Authentication = []string{kid}
	doc.AssertionMethod = []string{kid}
	return doc
}

// Metadata is the DID document metadata of a resolution (DID Core §7.1.3),
// with IMI's registrar attestation.
type Metadata struct {
	Created     time.Time    `json:"created"`
	Updated     time.Time    `json:"updated"`
	Deactivated bool         `json:"deactivated,omitempty"`
	VersionID   string       `json:"versionId"`
	Attestation *Attestation `json:"imiAttestation,omitempty"`
	// DeactivationReason says why a registrar or the resident deactivated it.
	DeactivationReason string `json:"imiDeactivationReason,omitempty"`
	Kind               string `json:"imiSubjectKind"`
}

// Attestation records who proofed the subject's identity in person.
type Attestation struct {
	Registrar string    `json:"registrar"`
	Assurance string    `json:"assuranceLevel"`
	Time      time.Time `json:"time"`
	Height    int64     `json:"height"`
}

// ResolutionMetadata is DID Core §7.1.2.
type ResolutionMetadata struct {
	ContentType string `json:"contentType,omitempty"`
	Error       string `json:"error,omitempty"`
	// Height is the block height whose committed state answered.
	Height int64 `json:"imiHeight"`
}

// Resolution is the result of resolving a DID.
type Resolution struct {
	Document           *Document          `json:"didDocument"`
	Metadata           Metadata           `json:"didDocumentMetadata"`
	ResolutionMetadata ResolutionMetadata `json:"didResolutionMetadata"`
}

func uitoa(n uint64) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
