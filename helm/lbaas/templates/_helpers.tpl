{{- define "lbaas.labels" -}}
app.kubernetes.io/name: lbaas
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
