module github.com/keepalive-go/keepalive/cmd/keepalive

go 1.26.0

replace (
	github.com/keepalive-go/keepalive => ../..
	github.com/keepalive-go/keepalive/ops => ../../ops
)

require (
	github.com/keepalive-go/keepalive v0.0.0-00010101000000-000000000000
	github.com/keepalive-go/keepalive/ops v0.0.0-00010101000000-000000000000
	github.com/stretchr/testify v1.12.1
	golang.org/x/term v0.48.0
)

require (
	github.com/vishvananda/netlink v1.3.1 // indirect
	github.com/vishvananda/netns v0.0.5 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
