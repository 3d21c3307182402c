"""What builds the course for a class (nbgrader assignments, the website, hub links), not what lessons import."""
