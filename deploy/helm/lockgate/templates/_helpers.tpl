{{- define "lockgate.name" -}}{{ .Chart.Name }}{{- end -}}
{{- define "lockgate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}
{{- define "lockgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lockgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "lockgate.labels" -}}
{{ include "lockgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
{{- define "lockgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "lockgate.fullname" .) .Values.serviceAccount.name }}
{{- else -}}{{ default "default" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}
{{- define "lockgate.image" -}}
{{- if .Values.image.digest -}}{{ printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else -}}{{ printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}{{- end -}}
{{- end -}}
{{/* Refuse shapes that cannot work, at render time. */}}
{{- define "lockgate.validate" -}}
{{- if eq .Values.storage "sqlite" -}}
{{- if gt (int .Values.replicaCount) 1 -}}{{ fail "storage: sqlite holds its state in one pod's file: replicaCount must be 1 (use storage: postgres to scale out)" }}{{- end -}}
{{- if .Values.autoscaling.enabled -}}{{ fail "storage: sqlite cannot autoscale: set autoscaling.enabled=false or use storage: postgres" }}{{- end -}}
{{- end -}}
{{- end -}}
{{- define "lockgate.grace" -}}
{{- $min := add .Values.preStopSeconds .Values.drainSeconds 5 -}}
{{- if .Values.terminationGracePeriodSeconds -}}
{{- if lt (int .Values.terminationGracePeriodSeconds) (int $min) -}}{{ fail (printf "terminationGracePeriodSeconds must be at least preStopSeconds + drainSeconds + 5 = %d" (int $min)) }}{{- end -}}
{{ .Values.terminationGracePeriodSeconds }}
{{- else -}}{{ $min }}{{- end -}}
{{- end -}}
{{/* Env shared by the pods and the migrate Job: secrets only by reference. */}}
{{- define "lockgate.env" -}}
{{- range .Values.secretEnv }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.existingSecret }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end }}
{{- range .Values.extraEnv }}
- name: {{ .name }}
  value: {{ .value | quote }}
{{- end }}
{{- end -}}
