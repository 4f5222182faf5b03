// Package telemetry builds the tracer provider and the log hook a node is
// wired with. Nothing here is global: main (or a test) passes the result to
// the packages that trace.
package telemetry

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// TracingOptions say where and as whom spans are exported.
type TracingOptions struct {
	// URL is the OTLP traces endpoint (config.Config.TracesURL); "" turns
	// tracing off.
	URL string
	// Protocol is grpc, http/protobuf or http/json.
	Protocol    string
	ServiceName string
	// Instance distinguishes nodes of one service (the replica name).
	Instance string
	Version  string
}

// Tracing is an exporting tracer provider with the W3C propagator. A nil
// *Tracing means tracing is off; its methods are safe to call on nil.
type Tracing struct {
	Provider   trace.TracerProvider
	Propagator propagation.TextMapPropagator
	sdk        *sdktrace.TracerProvider
}

// NewTracing returns nil, nil when o.URL is empty: no provider, no
// middleware, no per-request cost. The sampler follows OTEL_TRACES_SAMPLER
// (default parentbased_always_on), so one sampling decision made where a
// request enters holds across every node it touches.
func NewTracing(ctx context.Context, o TracingOptions) (*Tracing, error) {
	if o.URL == "" {
		return nil, nil
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch o.Protocol {
	case "grpc":
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(o.URL))
	case "http/protobuf":
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(o.URL))
	case "http/json":
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(o.URL), otlptracehttp.WithEncoding(otlptracehttp.EncodingJSON))
	default:
		return nil, fmt.Errorf("telemetry: OTLP protocol %q: want grpc, http/protobuf or http/json", o.Protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP exporter: %w", err)
	}
	// OTEL_RESOURCE_ATTRIBUTES may add attributes; ours come last and win
	// for the service name, which the config already resolved.
	attrs := []attribute.KeyValue{semconv.ServiceName(o.ServiceName), semconv.ServiceInstanceID(o.Instance)}
	if o.Version != "" {
		attrs = append(attrs, semconv.ServiceVersion(o.Version))
	}
	res, err := resource.New(ctx, resource.WithFromEnv(), resource.WithTelemetrySDK(), resource.WithAttributes(attrs...))
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Tracing{
		Provider:   sdk,
		Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		sdk:        sdk,
	}, nil
}

// Tracer returns a named tracer, or nil when tracing is off so callers can
// skip span work entirely.
func (t *Tracing) Tracer(name string) trace.Tracer {
	if t == nil {
		return nil
	}
	return t.Provider.Tracer(name)
}

// Shutdown flushes buffered spans and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.sdk.Shutdown(ctx)
}
