package auth

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
)

// Vectors computed outside Go: RFC 7914 §11 (PBKDF2-HMAC-SHA-256), Python's
// hashlib.pbkdf2_hmac, and coreutils sha256sum of salt||password.
var knownHashes = []struct {
	name, hash, password string
}{
	{"rfc7914 padded", "pbkdf2-sha256$1$c2FsdA==$VawEblbjCJ/sFpHCJUS2BflBhSFt3gRl5oudV8INrLxJypzM8Xm2RZkWZLOdd+8xfHG4RbHjC9UJESBB06GXgw==", "passwd"},
	{"rfc7914 unpadded", "pbkdf2-sha256$1$c2FsdA$VawEblbjCJ/sFpHCJUS2BflBhSFt3gRl5oudV8INrLxJypzM8Xm2RZkWZLOdd+8xfHG4RbHjC9UJESBB06GXgw", "passwd"},
	{"python 10000", "pbkdf2-sha256$10000$MDEyMzQ1Njc4OWFiY2RlZg==$TI2grtvV1HW5nz2rBY4tctlrmOj5bZs0dw9j8NHpRRc=", "correct horse"},
	{"sha256", "sha256$salt$13601bda4ea78e55a07b98866d2be6be0744e3866f13c00c811cab608a28f322", "password"},
	{"sha256 upper hex", "sha256$salt$13601BDA4EA78E55A07B98866D2BE6BE0744E3866F13C00C811CAB608A28F322", "password"},
}

func TestVerifyKnownHashes(t *testing.T) {
	for _, c := range knownHashes {
		t.Run(c.name, func(t *testing.T) {
			ok, err := VerifyPassword(c.hash, c.password)
			if err != nil || !ok {
				t.Fatalf("VerifyPassword(right) = %v, %v; want true, nil", ok, err)
			}
			ok, err = VerifyPassword(c.hash, c.password+"x")
			if err != nil || ok {
				t.Fatalf("VerifyPassword(wrong) = %v, %v; want false, nil", ok, err)
			}
			if ok, _ := VerifyPassword(c.hash, ""); ok {
				t.Fatal("empty password accepted")
			}
		})
	}
}

func TestHashPasswordRoundTrip(t *testing.T) {
	h1, err := HashPassword("s3cr3t", 1000)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Split(h1, "$")
	if len(f) != 4 || f[0] != "pbkdf2-sha256" || f[1] != "1000" || len(f[2]) != 22 || len(f[3]) != 43 {
		t.Fatalf("hash %q: want pbkdf2-sha256$1000$<22 chars>$<43 chars>", h1)
	}
	if ok, err := VerifyPassword(h1, "s3cr3t"); !ok || err != nil {
		t.Fatalf("right password: %v, %v", ok, err)
	}
	if ok, err := VerifyPassword(h1, "s3cr3T"); ok || err != nil {
		t.Fatalf("wrong password: %v, %v", ok, err)
	}
	h2, _ := HashPassword("s3cr3t", 1000)
	if h1 == h2 {
		t.Fatal("two hashes of one password are equal: salt not random")
	}

	hd, err := HashPassword("x", 0)
	if err != nil || !strings.HasPrefix(hd, "pbkdf2-sha256$100000$") {
		t.Fatalf("default iterations: %q, %v", hd, err)
	}
	for _, n := range []int{-1, MinIterations - 1, MaxIterations + 1} {
		if _, err := HashPassword("x", n); err == nil {
			t.Errorf("HashPassword(iterations=%d) succeeded", n)
		}
	}

	s, err := HashPasswordSHA256("pa$$word")
	if err != nil || !strings.HasPrefix(s, "sha256$") {
		t.Fatalf("HashPasswordSHA256: %q, %v", s, err)
	}
	if ok, err := VerifyPassword(s, "pa$$word"); !ok || err != nil {
		t.Fatalf("sha256 right password: %v, %v", ok, err)
	}
	if ok, _ := VerifyPassword(s, "pa$$wor"); ok {
		t.Fatal("sha256 wrong password accepted")
	}
}

func TestMalformedHashes(t *testing.T) {
	for _, c := range []struct{ hash, want string }{
		{"", "want pbkdf2-sha256$<iterations>$<salt>$<key> or sha256$<salt>$<hex>"},
		{"hunter2", "want pbkdf2-sha256$<iterations>$<salt>$<key> or sha256$<salt>$<hex>"},
		{"md5$salt$abc", "unknown scheme (want pbkdf2-sha256 or sha256)"},
		{"PBKDF2-SHA256$1000$c2FsdA$VawEblbjCJ/sFpHCJUS2BflBhSFt3gRl5oudV8INrLw", "unknown scheme"},
		{"pbkdf2-sha256$1000$c2FsdA", "pbkdf2-sha256 wants 4 fields separated by '$', got 3"},
		{"pbkdf2-sha256$1000$c2FsdA$a$b", "wants 4 fields separated by '$', got 5"},
		{"pbkdf2-sha256$ten$c2FsdA$VawEblbjCJ/sFpHCJUS2BflBhSFt3gRl5oudV8INrLw", "iterations are not a number"},
		{"pbkdf2-sha256$-5$c2FsdA$VawEblbjCJ/sFpHCJUS2BflBhSFt3gRl5oudV8INrLw", "iterations are not a number"},
		{"pbkdf2-sha256$0$c2FsdA$VawEblbjCJ/sFpHCJUS2BflBhSFt3gRl5oudV8INrLw", "iterations must be 1..10000000, got 0"},
		{"pbkdf2-sha256$99999999$c2FsdA$VawEblbjCJ/sFpHCJUS2BflBhSFt3gRl5oudV8INrLw", "iterations must be 1..10000000, got 99999999"},
		{"pbkdf2-sha256$1000$$VawEblbjCJ/sFpHCJUS2BflBhSFt3gRl5oudV8INrLw", "salt is not non-empty base64"},
		{"pbkdf2-sha256$1000$!!!!$VawEblbjCJ/sFpHCJUS2BflBhSFt3gRl5oudV8INrLw", "salt is not non-empty base64"},
		{"pbkdf2-sha256$1000$c2FsdA$not*base64", "key is not base64"},
		{"pbkdf2-sha256$1000$c2FsdA$c2hvcnQ", "key is 5 bytes, want 16..64"},
		{"sha256$13601bda4ea78e55a07b98866d2be6be0744e3866f13c00c811cab608a28f322", "sha256 wants 3 fields separated by '$'"},
		{"sha256$a$b$13601bda4ea78e55a07b98866d2be6be0744e3866f13c00c811cab608a28f322", "sha256 wants 3 fields separated by '$'"},
		{"sha256$$13601bda4ea78e55a07b98866d2be6be0744e3866f13c00c811cab608a28f322", "sha256 salt is empty"},
		{"sha256$salt$13601bda", "sha256 digest is not 64 hex digits"},
		{"sha256$salt$zz601bda4ea78e55a07b98866d2be6be0744e3866f13c00c811cab608a28f322", "sha256 digest is not 64 hex digits"},
	} {
		ok, err := VerifyPassword(c.hash, "passwd")
		if ok || err == nil {
			t.Errorf("VerifyPassword(%q) = %v, %v; want an error", c.hash, ok, err)
			continue
		}
		if !errors.Is(err, errHashFormat) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("VerifyPassword(%q) error %q; want it to contain %q", c.hash, err, c.want)
		}
		if c.hash != "" && strings.Contains(err.Error(), c.hash) {
			t.Errorf("error %q repeats the stored hash", err)
		}
	}
}

// TestREADMEHashes keeps the README's example hashes honest.
func TestREADMEHashes(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	found := regexp.MustCompile(`password_hash = "([^"]+)"`).FindAllStringSubmatch(string(data), -1)
	if len(found) != 2 {
		t.Fatalf("found %d example hashes in README.md, want 2", len(found))
	}
	for _, m := range found {
		if ok, err := VerifyPassword(m[1], "change-me"); !ok || err != nil {
			t.Errorf("README hash %q: %v, %v; want it to verify \"change-me\"", m[1], ok, err)
		}
	}
}
