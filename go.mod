module github.com/edgeway/edgeway

go 1.26.8

require (
	github.com/BurntSushi/toml v1.5.0 // indirect
	github.com/gorilla/websocket v1.5.0 // indirect
	github.com/mochi-mqtt/server/v2 v2.7.9 // indirect
	github.com/rs/xid v1.4.0 // indirect
)
