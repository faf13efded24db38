{{/* The name of every object of the release. */}}
{{- define "chittyid-injector.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels that select the injector's pods. */}}
{{- define "chittyid-injector.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "chittyid-injector.labels" -}}
{{ include "chittyid-injector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The Secret with the serving certificate. */}}
{{- define "chittyid-injector.tlsSecret" -}}
{{- if .Values.tls.certManager.enabled -}}
{{- printf "%s-tls" (include "chittyid-injector.fullname" .) -}}
{{- else -}}
{{- required "tls.secretName is required when tls.certManager.enabled is false" .Values.tls.secretName -}}
{{- end -}}
{{- end -}}

{{/* The injector's config file (inject.Config). */}}
{{- define "chittyid-injector.config" -}}
image: {{ .Values.sidecar.image | quote }}
{{- with .Values.sidecar.allowedImages }}
allowedImages: {{ toJson . }}
{{- end }}
configMap: {{ .Values.sidecar.configMap | quote }}
tokenSecret: {{ .Values.sidecar.tokenSecret | quote }}
{{- with .Values.sidecar.resources }}
resources: {{ toJson . }}
{{- end }}
maxResources: {{ toJson .Values.sidecar.maxResources }}
apiPort: {{ .Values.sidecar.apiPort }}
minTerminationGracePeriodSeconds: {{ .Values.sidecar.minTerminationGracePeriodSeconds }}
{{- end -}}

{{/* What the two webhooks share. */}}
{{- define "chittyid-injector.webhookCommon" -}}
admissionReviewVersions: [v1]
sideEffects: None
failurePolicy: {{ .Values.webhook.failurePolicy }}
timeoutSeconds: {{ .Values.webhook.timeoutSeconds }}
reinvocationPolicy: Never
rules:
  - operations: [CREATE]
    apiGroups: [""]
    apiVersions: [v1]
    resources: [pods]
    scope: Namespaced
{{- end -}}
