module github.com/keepalive-go/keepalive

go 1.23.0

require (
	github.com/stretchr/testify v1.10.0 // indirect
	golang.org/x/sys v0.35.0 // indirect
)
