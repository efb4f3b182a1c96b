"""Building blocks shared by the methods: conv stacks, masked poolings, recurrent layers, losses."""
