package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/goblocks/goblocks/client"
)

// A cluster started with `make up` listens on 127.0.0.1:3001-3003.
func Example() {
	c, err := client.New([]string{"127.0.0.1:3001", "127.0.0.1:3002", "127.0.0.1:3003"},
		client.WithTimeout(5*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	block := make([]byte, client.DefaultBlockSize)
	copy(block, "hello")
	version, err := c.Put(ctx, "greeting", block)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("stored version", version)

	data, err := c.Get(ctx, "greeting")
	switch {
	case errors.Is(err, client.ErrNotFound):
		fmt.Println("no such block")
	case errors.Is(err, client.ErrUnavailable):
		fmt.Println("not enough replicas answered; try again later")
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Printf("%s\n", data[:5])
	}
}

// Ask every member for its own status, e.g. to sum the stored copies.
func ExampleClient_ClusterStatus() {
	c, err := client.New([]string{"127.0.0.1:3001"})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	view, err := c.ClusterStatus(ctx, "") // any reachable node
	if err != nil {
		log.Fatal(err)
	}
	var total int64
	for _, m := range view.Members {
		st, err := c.ClusterStatus(ctx, m.Addr)
		if err != nil {
			fmt.Println(m.Name, "unreachable:", err)
			continue
		}
		total += st.Blocks
	}
	fmt.Println("epoch", view.Epoch, "copies", total)
}
