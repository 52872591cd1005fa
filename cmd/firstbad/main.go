// Command firstbad finds the commit that broke (or fixed) something.
package main

import (
	"os"

	"github.com/firstbad/firstbad/internal/cli"
	"github.com/firstbad/firstbad/internal/guest"
)

func main() {
	// Inside a test VM the same binary is the guest's /init.
	if guest.IsAgent() {
		os.Exit(guest.Agent())
	}
	// On a real machine it is the agent started over SSH; in a guest
	// whose own init booted, one of its services.
	if len(os.Args) > 1 && os.Args[1] == guest.MachineAgentArg {
		os.Exit(guest.MachineAgent(os.Args[2:], os.Stdin))
	}
	if len(os.Args) > 1 && os.Args[1] == guest.SystemAgentArg {
		os.Exit(guest.SystemAgent())
	}
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
