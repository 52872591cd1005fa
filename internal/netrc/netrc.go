// Package netrc finds credentials for a host in a netrc file ($NETRC,
// else ~/.netrc): shared stores and caches take them from there, never
// from a URL on the command line, which ends up in logs and reports.
package netrc

import (
	"os"
	"path/filepath"
	"strings"
)

// Lookup finds the login and password for host; "default" applies when
// no machine line matches.
func Lookup(host string) (user, pass string) {
	path := os.Getenv("NETRC")
	if path == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", ""
		}
		path = filepath.Join(home, ".netrc")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", ""
	}
	fields := strings.Fields(string(data))
	match := false
	for i := 0; i+1 < len(fields); i++ {
		switch fields[i] {
		case "machine":
			match = fields[i+1] == host
			i++
		case "default":
			match = user == ""
		case "login":
			if match {
				user = fields[i+1]
			}
			i++
		case "password":
			if match {
				pass = fields[i+1]
			}
			i++
		}
	}
	return user, pass
}
