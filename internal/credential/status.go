package credential

import (
	"fmt"
	"time"

	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/statuslist"
)

// StatusToken signs the IETF status-list token of one of au's lists as the
// ledger holds it: two bits per entry, in force at iat for lifetime.
func StatusToken(au *ledger.Authority, k key.Private, l *ledger.StatusList, iat time.Time, lifetime, ttl time.Duration) (string, error) {
	if !k.Public().Equal(au.Key) {
		return "", fmt.Errorf("the key is not %s's current key", au.ID)
	}
	sl, err := statuslist.New(2, ledger.StatusListSize)
	if err != nil {
		return "", err
	}
	for idx, v := range l.NotValid {
		if err := sl.Set(int(idx), v); err != nil {
			return "", fmt.Errorf("status entry %d: %w", idx, err)
		}
	}
	iat = iat.UTC().Truncate(time.Second)
	return statuslist.SignToken(Signer(k), KeyID(au, au.KeyVersion), StatusURI(au, l.List), iat, iat.Add(lifetime), ttl, sl)
}
