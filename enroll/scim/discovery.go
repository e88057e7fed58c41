package scim

import "strings"

// serviceProviderConfig says what this service provider supports (RFC
// 7643 §5).
func serviceProviderConfig(base string) map[string]any {
	return map[string]any{
		"schemas":          []string{SchemaSPConfig},
		"documentationUri": "https://github.com/custodymdm/custody#directory",
		"patch":            map[string]any{"supported": true},
		"bulk":             map[string]any{"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
		"filter":           map[string]any{"supported": true, "maxResults": maxCount},
		"changePassword":   map[string]any{"supported": false},
		"sort":             map[string]any{"supported": false},
		"etag":             map[string]any{"supported": true},
		"authenticationSchemes": []any{map[string]any{
			"type": "oauthbearertoken", "name": "Bearer token",
			"description": "A token from `custody scim token new`, sent as Authorization: Bearer.",
			"primary":     true,
		}},
		"meta": map[string]any{"resourceType": "ServiceProviderConfig", "location": base + "/ServiceProviderConfig"},
	}
}

func resourceTypeJSON(base string, rt *ResourceType) map[string]any {
	var ext []any
	for _, e := range rt.Extensions {
		ext = append(ext, map[string]any{"schema": e.ID, "required": false})
	}
	out := map[string]any{
		"schemas": []string{SchemaResourceType}, "id": rt.Name, "name": rt.Name,
		"endpoint": rt.Endpoint, "schema": rt.Schema.ID,
		"meta": map[string]any{"resourceType": "ResourceType", "location": base + "/ResourceTypes/" + rt.Name},
	}
	if ext != nil {
		out["schemaExtensions"] = ext
	}
	return out
}

// resourceTypes is /ResourceTypes (a ListResponse) or one of them by
// name; nil for an unknown one.
func resourceTypes(base, id string) any {
	all := []*ResourceType{UserType, GroupType}
	if id != "" {
		for _, rt := range all {
			if strings.EqualFold(rt.Name, id) {
				return resourceTypeJSON(base, rt)
			}
		}
		return nil
	}
	var list []any
	for _, rt := range all {
		list = append(list, resourceTypeJSON(base, rt))
	}
	return map[string]any{"schemas": []string{SchemaListResponse}, "totalResults": len(list), "startIndex": 1,
		"itemsPerPage": len(list), "Resources": list}
}

func schemaJSON(base string, s *Schema) map[string]any {
	return map[string]any{
		"schemas": []string{SchemaSchema}, "id": s.ID, "name": s.Name, "description": s.Description,
		"attributes": s.Attributes,
		"meta":       map[string]any{"resourceType": "Schema", "location": base + "/Schemas/" + s.ID},
	}
}

// schemas is /Schemas (a ListResponse) or one schema by URN; nil for an
// unknown one.
func schemas(base, id string) any {
	all := []*Schema{&UserSchema, &EnterpriseUserSchema, &GroupSchema}
	if id != "" {
		for _, s := range all {
			if strings.EqualFold(s.ID, id) {
				return schemaJSON(base, s)
			}
		}
		return nil
	}
	var list []any
	for _, s := range all {
		list = append(list, schemaJSON(base, s))
	}
	return map[string]any{"schemas": []string{SchemaListResponse}, "totalResults": len(list), "startIndex": 1,
		"itemsPerPage": len(list), "Resources": list}
}
