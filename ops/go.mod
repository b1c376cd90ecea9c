module github.com/keepalive-go/keepalive/ops

go 1.26.0

replace github.com/keepalive-go/keepalive => ../

require (
	github.com/keepalive-go/keepalive v0.0.0-00010101000000-000000000000
	github.com/vishvananda/netlink v1.3.1
	github.com/vishvananda/netns v0.0.5
	golang.org/x/sys v0.50.0
)

require (
	github.com/stretchr/testify v1.12.1
	go.yaml.in/yaml/v3 v3.0.5 // indirect
)
