package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxReviewBytes bounds a review's body: a pod is at most what etcd
// stores (1.5 MiB by default), and a review holds it once for a create.
const maxReviewBytes = 4 << 20

// reviewHandler serves AdmissionReview v1 for pods at one mode.
type reviewHandler struct {
	in      *Injector
	mode    Mode
	metrics *metrics
	log     *slog.Logger
}

// ServeHTTP answers every review it can decode with an AdmissionReview,
// a denial with a message when the pod cannot get the sidecar; a body that
// is not a review gets a 4xx with a message, which the API server reports
// as a failed call.
func (h *reviewHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	outcome := h.serve(w, r)
	h.metrics.observe(outcome, time.Since(start))
}

func (h *reviewHandler) serve(w http.ResponseWriter, r *http.Request) string {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "chittyid-injector: POST an AdmissionReview v1 here", http.StatusMethodNotAllowed)
		return outcomeMalformed
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		http.Error(w, fmt.Sprintf("chittyid-injector: Content-Type %q: want application/json", r.Header.Get("Content-Type")), http.StatusUnsupportedMediaType)
		return outcomeMalformed
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReviewBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("chittyid-injector: review larger than %d bytes", tooBig.Limit), http.StatusRequestEntityTooLarge)
		} else {
			http.Error(w, "chittyid-injector: reading the review: "+err.Error(), http.StatusBadRequest)
		}
		return outcomeMalformed
	}
	review, err := decodeReview(body)
	if err != nil {
		http.Error(w, "chittyid-injector: "+err.Error(), http.StatusBadRequest)
		return outcomeMalformed
	}
	resp, outcome := h.respond(review.Request)
	review.Request = nil
	review.Response = resp
	out, err := json.Marshal(review)
	if err != nil {
		http.Error(w, "chittyid-injector: encoding the response: "+err.Error(), http.StatusInternalServerError)
		return outcomeMalformed
	}
	w.Header().Set("Content-Type", "application/json")
	if _, err := w.Write(out); err != nil {
		h.log.Debug("writing the admission response", "uid", resp.UID, "err", err)
	}
	return outcome
}

// decodeReview decodes an AdmissionReview v1 that has a request.
func decodeReview(body []byte) (*admissionv1.AdmissionReview, error) {
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		return nil, fmt.Errorf("decoding the AdmissionReview: %w", err)
	}
	gvk := review.GroupVersionKind()
	if gvk != admissionv1.SchemeGroupVersion.WithKind("AdmissionReview") {
		return nil, fmt.Errorf("got apiVersion %q kind %q: want admission.k8s.io/v1 AdmissionReview (admissionReviewVersions: [v1] in the webhook configuration)", review.APIVersion, review.Kind)
	}
	if review.Request == nil || review.Request.UID == "" {
		return nil, errors.New("the AdmissionReview has no request or no request.uid")
	}
	return &review, nil
}

// respond answers one request; a pod the injector cannot read or cannot
// inject is denied with the reason.
func (h *reviewHandler) respond(req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, string) {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	pod, err := podOf(req)
	if err != nil {
		deny(resp, http.StatusBadRequest, err)
		return resp, outcomeInvalid
	}
	res, err := h.in.Mutate(pod, h.mode)
	if err != nil {
		deny(resp, http.StatusUnprocessableEntity, fmt.Errorf("chittyid-sidecar: %w", err))
		h.log.Info("denied", "namespace", req.Namespace, "pod", podName(req, pod), "reason", err)
		return resp, outcomeDenied
	}
	resp.Warnings = res.Warnings
	h.metrics.warnings.Add(float64(len(res.Warnings)))
	if res.Patch != nil {
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = res.Patch, &pt
		h.log.Info("injected", "namespace", req.Namespace, "pod", podName(req, pod), "warnings", len(res.Warnings))
	}
	return resp, res.Outcome
}

// podOf decodes the pod of a CREATE; anything else is a misconfigured
// webhook (rules: pods, CREATE), said so.
func podOf(req *admissionv1.AdmissionRequest) (*corev1.Pod, error) {
	if req.Kind.Group != "" || req.Kind.Version != "v1" || req.Kind.Kind != "Pod" {
		return nil, fmt.Errorf("chittyid-injector handles v1 Pods, got %s (check the webhook's rules)", req.Kind.String())
	}
	if req.Operation != admissionv1.Create {
		return nil, fmt.Errorf("chittyid-injector handles CREATE, got %s (check the webhook's rules)", req.Operation)
	}
	if len(req.Object.Raw) == 0 {
		return nil, errors.New("chittyid-injector: the request has no object")
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return nil, fmt.Errorf("chittyid-injector: decoding the pod: %w", err)
	}
	return &pod, nil
}

func deny(resp *admissionv1.AdmissionResponse, code int32, err error) {
	resp.Allowed = false
	resp.Result = &metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    code,
		Reason:  metav1.StatusReasonInvalid,
		Message: err.Error(),
	}
	if code == http.StatusBadRequest {
		resp.Result.Reason = metav1.StatusReasonBadRequest
	}
}

// podName is the pod's name, or its generateName with "*" for a pod of a
// controller, which the API server names after admission.
func podName(req *admissionv1.AdmissionRequest, pod *corev1.Pod) string {
	switch {
	case req.Name != "":
		return req.Name
	case pod.Name != "":
		return pod.Name
	}
	return pod.GenerateName + "*"
}
