// Package auth holds edgeway's authenticators and its topic ACL.
//
// Three authenticator types register themselves with the gateway framework
// from init, so importing this package (blank import in the agent's list)
// makes them available as `type = "…"` in [[gateway.<kind>.authentication]]:
//
//   - anonymous: allows every client. Under the hardened security profile a
//     gateway without authenticators denies everyone, so "anyone may
//     connect" has to be written down.
//   - built_in: users listed in the config, with salted password hashes
//     (see HashPassword). An unknown user is passed on to the next
//     authenticator; a known user with a wrong password is denied. The user
//     set can be changed at runtime through *Builtin.
//   - http: asks an HTTP service, in EMQX 5's request and response format.
//     A failing backend denies under the hardened profile and passes on
//     under the legacy one.
//
// NewACL builds the [authorization] rule list as a gateway.Authorizer.
//
// See README.md in this folder for complete example configs and the HTTP
// contract.
package auth
