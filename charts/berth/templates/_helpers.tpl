{{/* Names and labels shared by every template. */}}

{{- define "berth.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* release-chart, unless the release name already contains the chart name. */}}
{{- define "berth.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "berth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "berth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "berth.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "berth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "berth.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "berth.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the operator's client certificate (tls.crt, tls.key). */}}
{{- define "berth.operatorTLSSecret" -}}
{{- if .Values.operatorTLS.existingSecret }}
{{- .Values.operatorTLS.existingSecret }}
{{- else if and .Values.operatorTLS.cert .Values.operatorTLS.key }}
{{- printf "%s-operator-tls" (include "berth.fullname" .) }}
{{- else }}
{{- fail "operatorTLS: set existingSecret (a kubernetes.io/tls Secret) or cert and key (PEM) — the operator's client certificate for the agents, CN berth-operator, signed by the agents' CA; see docs/install.md" }}
{{- end }}
{{- end }}

{{/* The Secret holding the CA that signed the agents' certificates (ca.crt). */}}
{{- define "berth.agentsCASecret" -}}
{{- if .Values.agentsCA.existingSecret }}
{{- .Values.agentsCA.existingSecret }}
{{- else if .Values.agentsCA.cert }}
{{- printf "%s-agents-ca" (include "berth.fullname" .) }}
{{- else }}
{{- fail "agentsCA: set existingSecret (a Secret with ca.crt) or cert (PEM) — the CA that signed the agents' certificates; see docs/install.md" }}
{{- end }}
{{- end }}

{{/* Where the operator reads ca.crt, tls.crt and tls.key (BERTH_TLS_DIR). */}}
{{- define "berth.tlsDir" -}}
/etc/berth/operator-tls
{{- end }}

{{/* The sessions CA's Secret (kubernetes.io/tls), or "" when sessions are off. */}}
{{- define "berth.sessionsCASecret" -}}
{{- if .Values.sessionsCA.existingSecret }}
{{- .Values.sessionsCA.existingSecret }}
{{- else if .Values.sessionsCA.cert }}
{{- printf "%s-sessions-ca" (include "berth.fullname" .) }}
{{- end }}
{{- end }}
