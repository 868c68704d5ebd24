"""Role-based access control: roles, `resource:action` permissions and the guard dependency."""
