// Command firstbad finds the commit that broke (or fixed) something.
package main

import (
	"os"

	"github.com/firstbad/firstbad/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
