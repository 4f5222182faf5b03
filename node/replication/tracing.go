package replication

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/goblocks/goblocks/node/ring"
)

// replicaSpan starts the span of one coordinator → replica call (a client
// span when the replica is remote: its server span becomes the child) and
// returns the function that ends it with the call's error.
func (c *Coordinator) replicaSpan(ctx context.Context, name string, m ring.Member, id string) (context.Context, func(error)) {
	if c.o.Tracer == nil {
		return ctx, func(error) {}
	}
	kind := trace.SpanKindClient
	if m.Name == c.o.Self {
		kind = trace.SpanKindInternal
	}
	ctx, span := c.o.Tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(
		attribute.String("block.id", id),
		attribute.String("replica.name", m.Name),
		attribute.String("operation", name),
	))
	return ctx, func(err error) {
		if err != nil {
			span.SetAttributes(attribute.String("error.description", err.Error()))
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}
