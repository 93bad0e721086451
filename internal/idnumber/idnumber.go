// Package idnumber validates the 18-character resident identity number of
// GB 11643-1999 and turns it into the registrar's uniqueness tag.
//
// The number itself never leaves the registrar's machine: an 18-digit number
// with a known structure is brute-forceable, so a plain hash of it would be
// personal data on the chain. The tag is an HMAC under a key only the
// registrars hold.
package idnumber

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"

	"github.com/imi-city/imi/internal/key"
)

// uniquenessLabel separates uniqueness tags from any other use of the key.
const uniquenessLabel = "imi/v1/uniqueness"

// Sentinel errors; messages are in words a clerk can act on.
var (
	ErrLength     = errors.New("a resident ID number has 18 characters / 居民身份证号码应为18位")
	ErrCharacters = errors.New("a resident ID number is 17 digits followed by a digit or X / 身份证号码应为17位数字加一位数字或X")
	ErrBirthDate  = errors.New("the birth date in the ID number is not a real date / 身份证号码中的出生日期无效")
	ErrCheckDigit = errors.New("the check digit does not match: the number was probably mistyped / 校验码不符，号码可能输入有误")
)

// weights are 2^(17-i) mod 11, as GB 11643-1999 defines them.
var weights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

// Number is a validated resident ID number in upper case.
type Number struct{ s string }

// Parse validates s (a lower-case x is accepted and upper-cased).
func Parse(s string) (Number, error) {
	s = strings.ToUpper(strings.TrimSpace(s))
	if len(s) != 18 {
		return Number{}, ErrLength
	}
	for i := 0; i < 17; i++ {
		if s[i] < '0' || s[i] > '9' {
			return Number{}, ErrCharacters
		}
	}
	if c := s[17]; (c < '0' || c > '9') && c != 'X' {
		return Number{}, ErrCharacters
	}
	if !validDate(s[6:14]) {
		return Number{}, ErrBirthDate
	}
	if CheckChar(s[:17]) != s[17] {
		return Number{}, ErrCheckDigit
	}
	return Number{s: s}, nil
}

// CheckChar computes the check character for the first 17 digits.
// It panics if body is not 17 ASCII digits; Parse checks that first.
func CheckChar(body string) byte {
	if len(body) != 17 {
		panic("idnumber: CheckChar needs 17 digits")
	}
	sum := 0
	for i := 0; i < 17; i++ {
		sum += int(body[i]-'0') * weights[i]
	}
	c := (12 - sum%11) % 11
	if c == 10 {
		return 'X'
	}
	return byte('0' + c)
}

// String returns the number. Callers must not log it.
func (n Number) String() string { return n.s }

// BirthDate returns YYYY, MM, DD from the number.
func (n Number) BirthDate() (year, month, day int) {
	return atoi(n.s[6:10]), atoi(n.s[10:12]), atoi(n.s[12:14])
}

// UniquenessTag is HMAC-SHA256 under the registrar-held key of a label and the
// number. Equal numbers give equal tags; without the key a tag reveals nothing.
func UniquenessTag(k key.HMAC, n Number) [32]byte {
	if n.s == "" {
		panic("idnumber: UniquenessTag of an unparsed number")
	}
	m := hmac.New(sha256.New, k.Bytes())
	m.Write([]byte(uniquenessLabel))
	m.Write([]byte{0})
	m.Write([]byte(n.s))
	var out [32]byte
	m.Sum(out[:0])
	return out
}

func validDate(s string) bool {
	y, m, d := atoi(s[0:4]), atoi(s[4:6]), atoi(s[6:8])
	if y < 1800 || m < 1 || m > 12 || d < 1 {
		return false
	}
	days := [13]int{0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
	if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
		days[2] = 29
	}
	return d <= days[m]
}

func atoi(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

// Example builds a valid number from a region code, a birth date and a
// sequence number; tests and the demo use it to make synthetic residents.
func Example(region string, year, month, day, seq int) (Number, error) {
	body := fmt.Sprintf("%s%04d%02d%02d%03d", region, year, month, day, seq%1000)
	if len(body) != 17 {
		return Number{}, ErrLength
	}
	return Parse(body + string(CheckChar(body)))
}
