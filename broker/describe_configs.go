package broker

// DescribeConfigs (key 32), v1–4.
//
// Topic resources list every supported topic config with its effective
// value and source (DYNAMIC_TOPIC_CONFIG for overrides, STATIC_BROKER_CONFIG
// when a broker setting supplies a non-built-in default, DEFAULT_CONFIG
// otherwise), with synonyms when asked (v1+) and types and documentation
// (v3+). Broker resources (name = a broker id; "" = this broker) list the
// broker settings, all read-only: Strata has no dynamic broker configs.

import (
	"context"
	"slices"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	resourceTopic  = kmsg.ConfigResourceType(2)
	resourceBroker = kmsg.ConfigResourceType(4)

	sourceDynamicTopic = kmsg.ConfigSource(1)
	sourceStaticBroker = kmsg.ConfigSource(4)
	sourceDefault      = kmsg.ConfigSource(5)
)

func (s *Server) handleDescribeConfigs(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
	req := kreq.(*kmsg.DescribeConfigsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, rr := range req.Resources {
		or := kmsg.NewDescribeConfigsResponseResource()
		or.ResourceType, or.ResourceName = rr.ResourceType, rr.ResourceName
		switch rr.ResourceType {
		case resourceTopic:
			t := s.topic(rr.ResourceName)
			if t == nil {
				or.ErrorCode = kerr.UnknownTopicOrPartition.Code
				break
			}
			or.Configs = s.topicConfigEntries(t.overrides, rr.ConfigNames, req.IncludeSynonyms, req.IncludeDocumentation)
		case resourceBroker:
			if rr.ResourceName != "" && rr.ResourceName != strconv.Itoa(int(s.opts.BrokerID)) {
				or.ErrorCode = kerr.InvalidRequest.Code
				m := "this broker can only describe its own configs (broker " + strconv.Itoa(int(s.opts.BrokerID)) + ")"
				or.ErrorMessage = &m
				break
			}
			or.Configs = s.brokerConfigEntries(rr.ConfigNames, req.IncludeDocumentation)
		default:
			or.ErrorCode = kerr.InvalidRequest.Code
			m := "unsupported resource type " + strconv.Itoa(int(rr.ResourceType))
			or.ErrorMessage = &m
		}
		resp.Resources = append(resp.Resources, or)
	}
	return resp
}

// topicConfigEntries describes a topic's configs; names filters (nil = all).
func (s *Server) topicConfigEntries(overrides map[string]string, names []string, synonyms, docs bool) []kmsg.DescribeConfigsResponseResourceConfig {
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, name := range topicConfigNames {
		if names != nil && !slices.Contains(names, name) {
			continue
		}
		d := topicConfigDefs[name]
		e := kmsg.NewDescribeConfigsResponseResourceConfig()
		e.Name = name
		def := d.brokerDefault(s.cfg)
		defSource := sourceDefault
		if d.broker != "" && s.brokerSettingSet(d.broker) {
			defSource = sourceStaticBroker
		}
		if v, ok := overrides[name]; ok {
			v := v
			e.Value, e.Source = &v, sourceDynamicTopic
		} else {
			v := def
			e.Value, e.Source, e.IsDefault = &v, defSource, defSource == sourceDefault
		}
		e.ConfigType = kmsg.ConfigType(d.typ)
		if docs {
			doc := d.doc
			e.Documentation = &doc
		}
		if synonyms {
			if v, ok := overrides[name]; ok {
				sy := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
				vv := v
				sy.Name, sy.Value, sy.Source = name, &vv, sourceDynamicTopic
				e.ConfigSynonyms = append(e.ConfigSynonyms, sy)
			}
			if d.broker != "" {
				sy := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
				bv, _ := s.cfg.Raw(d.broker)
				sy.Name, sy.Value, sy.Source = d.broker, &bv, defSource
				e.ConfigSynonyms = append(e.ConfigSynonyms, sy)
			}
		}
		out = append(out, e)
	}
	return out
}

func (s *Server) brokerConfigEntries(names []string, docs bool) []kmsg.DescribeConfigsResponseResourceConfig {
	var out []kmsg.DescribeConfigsResponseResourceConfig
	add := func(name, value, doc string, set bool) {
		if names != nil && !slices.Contains(names, name) {
			return
		}
		e := kmsg.NewDescribeConfigsResponseResourceConfig()
		v := value
		e.Name, e.Value, e.ReadOnly = name, &v, true
		e.Source, e.IsDefault = sourceDefault, true
		if set {
			e.Source, e.IsDefault = sourceStaticBroker, false
		}
		e.ConfigType = kmsg.ConfigType(cfgString)
		if docs {
			d := doc
			e.Documentation = &d
		}
		out = append(out, e)
	}
	add("broker.id", strconv.Itoa(int(s.opts.BrokerID)), "id of this broker", true)
	for _, st := range Settings {
		v, _ := s.cfg.Raw(st.Name)
		add(st.Name, v, st.Doc, s.brokerSettingSet(st.Name))
	}
	return out
}

// brokerSettingSet reports whether a broker setting differs from its
// built-in default.
func (s *Server) brokerSettingSet(name string) bool {
	v, _ := s.cfg.Raw(name)
	for _, st := range Settings {
		if st.Name == name {
			return v != st.Default
		}
	}
	return false
}
