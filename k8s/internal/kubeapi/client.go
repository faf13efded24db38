package kubeapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsyaml "sigs.k8s.io/yaml"
)

// Client is a REST client of the API server with a bearer token: JSON and
// server-side apply, no client-go.
type Client struct {
	base, token string
	hc          *http.Client

	mu sync.Mutex
	// resources caches discovery: "group/version kind" to the resource.
	resources map[string]resource
}

// NewClient returns a client of the API server at base (https://...)
// with hc's TLS settings and the bearer token.
func NewClient(base, token string, hc *http.Client) *Client {
	return &Client{base: base, token: token, hc: hc}
}

// Response is the API server's answer.
type Response struct {
	Status int
	Body   []byte
	// Warnings are the Warning headers' texts: Pod Security's, an
	// admission webhook's.
	Warnings []string
}

// Err returns a *StatusError for a status of 400 or more, else nil.
func (r *Response) Err() error {
	if r.Status < 400 {
		return nil
	}
	e := &StatusError{Code: r.Status}
	if err := json.Unmarshal(r.Body, &e.Status); err != nil || e.Status.Message == "" {
		e.Status.Message = strings.TrimSpace(string(r.Body))
	}
	return e
}

// StatusError is an API server's error answer.
type StatusError struct {
	Code   int
	Status metav1.Status
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("kube-apiserver: %d %s: %s", e.Code, e.Status.Reason, e.Status.Message)
}

// Do sends one request; an error is a transport error, the status is the
// caller's to check (Response.Err).
func (c *Client) Do(ctx context.Context, method, path, contentType string, body []byte) (*Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the response: %w", method, path, err)
	}
	return &Response{Status: resp.StatusCode, Body: data, Warnings: warnings(resp.Header.Values("Warning"))}, nil
}

// warnings returns the texts of Warning headers (RFC 7234 form: 299 -
// "text"), as kubectl prints them.
func warnings(headers []string) []string {
	var out []string
	for _, h := range headers {
		rest, ok := strings.CutPrefix(h, "299 - ")
		if !ok {
			out = append(out, h)
			continue
		}
		if text, err := strconv.Unquote(rest); err == nil {
			out = append(out, text)
		} else {
			out = append(out, rest)
		}
	}
	return out
}

// Apply applies one object (YAML or JSON) with server-side apply, as
// `kubectl apply --server-side --force-conflicts` does. A namespaced
// object without a namespace goes to namespace.
func (c *Client) Apply(ctx context.Context, obj []byte, namespace, fieldManager string) (*Response, error) {
	var meta struct {
		metav1.TypeMeta   `json:",inline"`
		metav1.ObjectMeta `json:"metadata"`
	}
	if err := sigsyaml.Unmarshal(obj, &meta); err != nil {
		return nil, fmt.Errorf("decoding the object to apply: %w", err)
	}
	if meta.Namespace != "" {
		namespace = meta.Namespace
	}
	path, err := c.Path(ctx, meta.APIVersion, meta.Kind, namespace, meta.Name)
	if err != nil {
		return nil, err
	}
	q := url.Values{"fieldManager": {fieldManager}, "force": {"true"}}
	resp, err := c.Do(ctx, http.MethodPatch, path+"?"+q.Encode(), "application/apply-patch+yaml", obj)
	if err != nil {
		return nil, err
	}
	return resp, resp.Err()
}

// Create posts obj (a k8s.io/api value) to the collection at path and
// decodes the created object into out, if not nil.
func (c *Client) Create(ctx context.Context, path string, obj, out any) (*Response, error) {
	body, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(ctx, http.MethodPost, path, "application/json", body)
	if err != nil {
		return nil, err
	}
	if err := resp.Err(); err != nil {
		return resp, err
	}
	if out != nil {
		if err := json.Unmarshal(resp.Body, out); err != nil {
			return resp, fmt.Errorf("decoding the created object: %w", err)
		}
	}
	return resp, nil
}

// Get decodes the object at path into out.
func (c *Client) Get(ctx context.Context, path string, out any) error {
	resp, err := c.Do(ctx, http.MethodGet, path, "", nil)
	if err != nil {
		return err
	}
	if err := resp.Err(); err != nil {
		return err
	}
	return json.Unmarshal(resp.Body, out)
}

// Delete deletes the object at path; a missing object is no error.
func (c *Client) Delete(ctx context.Context, path string) error {
	resp, err := c.Do(ctx, http.MethodDelete, path, "", nil)
	if err != nil {
		return err
	}
	if resp.Status == http.StatusNotFound {
		return nil
	}
	return resp.Err()
}

// resource is what discovery says of a kind.
type resource struct {
	name       string
	namespaced bool
}

// Path returns the REST path of an object, from discovery.
func (c *Client) Path(ctx context.Context, apiVersion, kind, namespace, name string) (string, error) {
	r, err := c.resource(ctx, apiVersion, kind)
	if err != nil {
		return "", err
	}
	p := "/apis/" + apiVersion
	if !strings.Contains(apiVersion, "/") {
		p = "/api/" + apiVersion
	}
	if r.namespaced {
		if namespace == "" {
			return "", fmt.Errorf("%s %s is namespaced: no namespace given", kind, name)
		}
		p += "/namespaces/" + namespace
	}
	p += "/" + r.name
	if name != "" {
		p += "/" + name
	}
	return p, nil
}

func (c *Client) resource(ctx context.Context, apiVersion, kind string) (resource, error) {
	key := apiVersion + " " + kind
	c.mu.Lock()
	r, ok := c.resources[key]
	c.mu.Unlock()
	if ok {
		return r, nil
	}
	path := "/apis/" + apiVersion
	if !strings.Contains(apiVersion, "/") {
		path = "/api/" + apiVersion
	}
	var list metav1.APIResourceList
	if err := c.Get(ctx, path, &list); err != nil {
		return resource{}, fmt.Errorf("discovering %s: %w", apiVersion, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.resources == nil {
		c.resources = map[string]resource{}
	}
	for _, res := range list.APIResources {
		if !strings.Contains(res.Name, "/") {
			c.resources[apiVersion+" "+res.Kind] = resource{name: res.Name, namespaced: res.Namespaced}
		}
	}
	r, ok = c.resources[key]
	if !ok {
		return resource{}, fmt.Errorf("the API server serves no kind %s in %s", kind, apiVersion)
	}
	return r, nil
}
